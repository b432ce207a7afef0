"""The NUS-WIDE label GloVe pickle used by LESA, BiAM and (ML)²P-Encoder (spec ``nus:...``).

The pickle (``NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300``) holds a list of two float32
arrays, unnormalised: [1000, 300] aligned with ``TagList1k.txt`` and [81, 300] aligned with
``Concepts81.txt``. The arrays carry no words, so the two vocabulary files are needed too:

- ``nus:PICKLE`` looks for them beside the pickle, then in BiAM's layout
  (``../NUS_WID_Tags/TagList1k.txt`` and ``../ConceptsList/Concepts81.txt``);
- ``nus:PICKLE,TAGLIST,CONCEPTS`` names them.

75 words are in both lists; in the released pickle their two rows are identical. Should they
differ, the Concepts81 row wins (it is the vector zero-shot evaluation uses for unseen labels).
Names are looked up like any word vector (:mod:`mlzsl.embeddings.base`), so a label made of
several NUS tags gets the mean of their vectors.

Pickles can run code when loaded: only load files from a source you trust.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mlzsl.embeddings.base import WordVectorEmbedder, file_fingerprint
from mlzsl.errors import DataError
from mlzsl.labels import read_vocabulary
from mlzsl.safe_pickle import load_pickle

TAGLIST_FILE = "TagList1k.txt"
CONCEPTS_FILE = "Concepts81.txt"
_BIAM_DIRS = {TAGLIST_FILE: "NUS_WID_Tags", CONCEPTS_FILE: "ConceptsList"}


class NusPickleEmbedder(WordVectorEmbedder):
    """Vectors of the 1,000 NUS-WIDE tags and 81 concepts from the LESA/BiAM pickle.

    Args:
        pickle_path: the pickle of two arrays [1000, E] and [81, E].
        taglist: ``TagList1k.txt``; ``None`` looks for it next to the pickle (module doc).
        concepts: ``Concepts81.txt``; ``None`` looks for it next to the pickle.

    Raises:
        DataError: a file is missing, unreadable or does not match the others.
    """

    def __init__(
        self,
        pickle_path: str | Path,
        taglist: str | Path | None = None,
        concepts: str | Path | None = None,
    ) -> None:
        self.path = Path(pickle_path).expanduser()
        tag_path = _vocabulary_path(self.path, taglist, TAGLIST_FILE)
        concept_path = _vocabulary_path(self.path, concepts, CONCEPTS_FILE)
        tag_vecs, concept_vecs = _load_arrays(self.path)  # [1000, E], [81, E]
        tags = _aligned_vocabulary(tag_path, tag_vecs, self.path, "first")
        concept_names = _aligned_vocabulary(concept_path, concept_vecs, self.path, "second")
        self._table = dict(zip(tags, tag_vecs, strict=True))
        self._table.update(zip(concept_names, concept_vecs, strict=True))  # concepts win
        self.dim = int(tag_vecs.shape[1])
        self.name = f"nus:{self.path.name}@{_fingerprint(self.path, tag_path, concept_path)}"
        self.spec = f"nus:{self.path},{tag_path},{concept_path}"

    @property
    def words(self) -> list[str]:
        """Every name this embedder knows as one word (tags, then concepts not among them)."""
        return list(self._table)

    def _lookup(self, words: set[str]) -> Mapping[str, np.ndarray]:
        return {w: self._table[w] for w in words if w in self._table}


def _vocabulary_path(pickle_path: Path, given: str | Path | None, filename: str) -> Path:
    """``given``, or ``filename`` beside the pickle, or in BiAM's sibling folder."""
    if given is not None:
        return Path(given).expanduser()
    candidates = [
        pickle_path.parent / filename,
        pickle_path.parent.parent / _BIAM_DIRS[filename] / filename,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(
        f"{pickle_path}: cannot find {filename} (tried {tried}); "
        "name it with the spec nus:PICKLE,TAGLIST,CONCEPTS"
    )


def _load_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The two float32 arrays [N1, E], [N2, E] of the pickle, checked."""
    data = _unpickle(path)
    if not isinstance(data, (list, tuple)) or len(data) != 2:
        raise DataError(f"{path}: expected a pickled list of two arrays, got {type(data).__name__}")
    arrays = []
    for which, array in zip(("first", "second"), data, strict=True):
        array = np.asarray(array)
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise DataError(f"{path}: the {which} array must be numeric 2-D, got {array.shape}")
        arrays.append(array.astype(np.float32, copy=False))
    if arrays[0].shape[1] != arrays[1].shape[1]:
        raise DataError(f"{path}: the two arrays differ in width: {[a.shape for a in arrays]}")
    return arrays[0], arrays[1]


def _unpickle(path: Path) -> object:
    """Load the pickle with :func:`mlzsl.safe_pickle.load_pickle`: numpy arrays only, no code."""
    return load_pickle(path, what="label-vector pickle")


def _aligned_vocabulary(
    path: Path, vectors: np.ndarray, pickle_path: Path, which: str
) -> list[str]:
    """Names of ``path``, checked to number the rows of the pickle's ``which`` array."""
    names = read_vocabulary(path)
    if len(names) != len(vectors):
        raise DataError(
            f"{path}: {len(names)} names, but the {which} array of {pickle_path} "
            f"has {len(vectors)} rows"
        )
    return names


def _fingerprint(*paths: Path) -> str:
    """One fingerprint of the pickle and its two vocabulary files together."""
    joined = "|".join(file_fingerprint(p) for p in paths)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]
