"""The :class:`Embedder` interface and what every word-vector embedder shares.

Shapes: L labels, E label-vector size.

Multi-word labels (word-vector embedders only): a label is first looked up whole, as written and
then lower-cased (GloVe knows some compounds: ``t-shirt``, ``e-mail``); otherwise it is
lower-cased, split on whitespace, ``_`` and ``-``, and its vector is the **mean of the token
vectors**. LESA and BiAM ship their label vectors as precomputed pickles and do not publish the
code that composed multi-word names, so the mean of word vectors is our choice, not a copied
convention. A token missing from the vocabulary raises :class:`LabelError`; no label ever gets a
silent zero vector — unless the spec asks for it: ``lenient:SPEC`` (benchmark vocabularies such as
Open Images', 508 of whose 7,586 names hold a word GloVe 6B lacks) averages the words it knows and
gives a label with none a zero vector (343 of them), with one warning counting them. A trailing
qualifier in square brackets (``"Ball [/m/018xm]"``) is dropped before lookup.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from mlzsl.errors import DataError, LabelError

_TOKEN_SEPARATORS = re.compile(r"[\s_\-]+")
_PUNCTUATION = re.compile(r"[^\w]+")  # lenient mode: "valentine's" -> valentine, s
_QUALIFIER = re.compile(r"\s*\[[^\]]*\]$")  # "Ball [/m/018xm]" -> "Ball"
_FINGERPRINT_BYTES = 1 << 20  # hash the first and last MiB: instant even on a 1 GB GloVe file
_MAX_LISTED = 10  # unknown labels named in one error message


class Embedder(ABC):
    """Turns label names into label vectors.

    Attributes:
        name: identity of the vectors, used as a cache and checkpoint key. File-based embedders
            include the file's basename and a content fingerprint, so a changed file never
            reuses stale vectors.
        spec: the string :func:`mlzsl.embeddings.create_embedder` accepts to rebuild this
            embedder (the file path may differ between machines; ``name`` does not).
        dim: E, the size of one label vector.
    """

    name: str
    spec: str
    dim: int

    @abstractmethod
    def embed(self, labels: Sequence[str]) -> np.ndarray:
        """Embed ``labels`` in order.

        Args:
            labels: L label names.

        Returns:
            float32 [L, E], not normalised (an empty list gives [0, E]).

        Raises:
            LabelError: a label is empty or has no known word; the message names the label and
                this embedder.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


class WordVectorEmbedder(Embedder):
    """An embedder backed by a word → vector table; composes multi-word labels (module doc).

    Subclasses implement :meth:`_lookup`, which fetches many words at once so that a table
    streamed from disk is read once per call, not once per word.
    """

    lenient: bool = False  # set by the ``lenient:`` spec: unknown words are skipped (module doc)

    @abstractmethod
    def _lookup(self, words: set[str]) -> Mapping[str, np.ndarray]:
        """Vectors (float32 [E]) of those ``words`` the vocabulary holds; absent ones omitted."""

    def embed(self, labels: Sequence[str]) -> np.ndarray:
        """Embed ``labels`` by whole-label lookup, else the mean of their token vectors.

        See :meth:`Embedder.embed` for arguments, return value and errors.
        """
        labels = check_labels(labels)
        if self.lenient:
            return self._embed_lenient(labels)
        plans = [_candidates(label) for label in labels]
        wanted = {w for whole, tokens in plans for w in (*whole, *tokens)}
        table = self._lookup(wanted) if wanted else {}
        out = np.empty((len(labels), self.dim), dtype=np.float32)  # [L, E]
        missing: list[str] = []
        for i, (label, (whole, tokens)) in enumerate(zip(labels, plans, strict=True)):
            vector = _compose(whole, tokens, table)
            if vector is None:
                missing.append(_why_unknown(label, tokens, table))
            else:
                out[i] = vector
        if missing:
            raise LabelError(_unknown_message(self.name, missing))
        return out

    def _embed_lenient(self, labels: list[str]) -> np.ndarray:
        """Whole label, else the mean of the known words; a label with none gets zeros.

        Words are also split at punctuation here (``"valentine's day"`` -> valentine, s, day),
        as GloVe's tokeniser did. Labels left with no known word are counted in one warning.
        """
        plans = [_candidates(label) for label in labels]
        words = [[w for t in tokens for w in _PUNCTUATION.split(t) if w] for _, tokens in plans]
        wanted = {w for (whole, _), ws in zip(plans, words, strict=True) for w in (*whole, *ws)}
        table = self._lookup(wanted) if wanted else {}
        out = np.zeros((len(labels), self.dim), dtype=np.float32)  # [L, E]
        empty: list[str] = []
        for i, ((whole, _), ws) in enumerate(zip(plans, words, strict=True)):
            vector = _compose(whole, [w for w in ws if w in table], table)
            if vector is None:
                empty.append(labels[i])
            else:
                out[i] = vector
        if empty:
            warnings.warn(
                f"embedder {self.name!r}: {len(empty)} of {len(labels)} labels have no known "
                f"word and get zero vectors, e.g. {', '.join(map(repr, empty[:_MAX_LISTED]))}",
                stacklevel=2,
            )
        return out


def split_label(label: str) -> list[str]:
    """Lower-case ``label`` and split it on whitespace, ``_`` and ``-`` into word tokens."""
    return [t for t in _TOKEN_SEPARATORS.split(label.strip().lower()) if t]


def check_labels(labels: Sequence[str] | Iterable[str]) -> list[str]:
    """Return ``labels`` as a list, raising :class:`LabelError` on a non-string or blank one."""
    if isinstance(labels, str):
        raise LabelError(f"expected a list of label names, got the single string {labels!r}")
    out = list(labels)
    for i, label in enumerate(out):
        if not isinstance(label, str) or not label.strip():
            raise LabelError(f"label {i} must be a non-empty string, got {label!r}")
    return out


def l2_normalize(vectors: np.ndarray, *, eps: float = 1e-12) -> np.ndarray:
    """Scale each row of ``vectors`` [L, E] to unit L2 norm (float32 [L, E]; zero rows stay 0)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)  # [L, 1]
    return vectors / np.maximum(norms, eps)


def file_fingerprint(path: Path) -> str:
    """A content fingerprint of ``path``: its size and a sha256 of its first and last MiB.

    Raises:
        DataError: the file cannot be read.
    """
    try:
        size = path.stat().st_size
        digest = hashlib.sha256(str(size).encode())
        with path.open("rb") as f:
            digest.update(f.read(_FINGERPRINT_BYTES))
            if size > _FINGERPRINT_BYTES:
                f.seek(max(_FINGERPRINT_BYTES, size - _FINGERPRINT_BYTES))
                digest.update(f.read())
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return f"{size}-{digest.hexdigest()[:16]}"


def _candidates(label: str) -> tuple[list[str], list[str]]:
    """Whole-label forms to try first (as written, lower-cased), then the tokens to average.

    A trailing ``[qualifier]`` (how Open Images' repeated names are told apart) is ignored.
    """
    stripped = _QUALIFIER.sub("", label.strip())
    whole = list(dict.fromkeys([stripped, stripped.lower()]))  # dedupe, keep order
    return whole, split_label(stripped)


def _compose(
    whole: list[str], tokens: list[str], table: Mapping[str, np.ndarray]
) -> np.ndarray | None:
    """The label's vector [E] from ``table``, or ``None`` when some token is unknown."""
    for form in whole:
        if form in table:
            return table[form]
    if not tokens or any(t not in table for t in tokens):
        return None
    stacked = np.stack([table[t] for t in tokens])  # [T, E], T tokens
    return stacked.mean(axis=0, dtype=np.float32)  # [E]


def _why_unknown(label: str, tokens: list[str], table: Mapping[str, np.ndarray]) -> str:
    """``'label' (missing word 'x')``: the label and the tokens the vocabulary lacks."""
    absent = [t for t in tokens if t not in table]
    if not absent:
        return f"{label!r} (no word in it)"
    words = ", ".join(repr(t) for t in absent)
    return f"{label!r} (missing word{'s' if len(absent) > 1 else ''} {words})"


def _unknown_message(embedder: str, missing: list[str]) -> str:
    """One error message naming the embedder and (up to ten of) the unknown labels."""
    listed = ", ".join(missing[:_MAX_LISTED])
    more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
    return (
        f"embedder {embedder!r} has no vector for {len(missing)} label(s): {listed}{more}; "
        "rename the label with words its vocabulary knows, or choose another embedder"
    )
