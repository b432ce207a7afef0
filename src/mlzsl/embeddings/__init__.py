"""Label names → label vectors float32 [L, E].

>>> from mlzsl.embeddings import create_embedder, embed_labels
>>> vectors = embed_labels(["dog", "red circle"], create_embedder("glove50"))  # [2, 50]

Specs (:func:`create_embedder`, :func:`list_embedders`): ``glove50`` (default, packaged GloVe
6B 50-d), ``glove:PATH`` (a GloVe text file), ``nus:PICKLE[,TAGLIST,CONCEPTS]`` (the LESA/BiAM
NUS-WIDE pickle), ``minilm`` (packaged all-MiniLM-L6-v2, optional extra), ``lift:DIM:SPEC`` /
``glove50x300`` (a fixed orthogonal lift to DIM, :mod:`mlzsl.embeddings.lift`).

Word-vector embedders look a label up whole, else average the vectors of its lower-cased
tokens (split on whitespace, ``_``, ``-``); see :mod:`mlzsl.embeddings.base`. An unknown word
raises :class:`~mlzsl.errors.LabelError`. Vectors are never normalised unless asked
(``embed_labels(..., normalize=True)`` or :func:`l2_normalize`): models decide.
"""

from mlzsl.embeddings.base import Embedder, WordVectorEmbedder, l2_normalize, split_label
from mlzsl.embeddings.cache import cache_key, default_cache_dir, embed_labels
from mlzsl.embeddings.glove import Glove50Embedder, GloveTextEmbedder
from mlzsl.embeddings.nus import NusPickleEmbedder
from mlzsl.embeddings.registry import DEFAULT_EMBEDDER, create_embedder, list_embedders
from mlzsl.embeddings.sentence import MiniLMEmbedder

__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "Glove50Embedder",
    "GloveTextEmbedder",
    "MiniLMEmbedder",
    "NusPickleEmbedder",
    "WordVectorEmbedder",
    "cache_key",
    "create_embedder",
    "default_cache_dir",
    "embed_labels",
    "l2_normalize",
    "list_embedders",
    "split_label",
]
