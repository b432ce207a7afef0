"""Label vocabularies: :class:`LabelSet` holds label names and which are seen or unseen.

Seen labels are those a model may train on; unseen labels are known only by their label vector
and are what zero-shot evaluation ranks. Order is significant: it is the column order of every
label matrix and score matrix that goes with the set.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlzsl.errors import DataError, LabelError
from mlzsl.files import open_input

SPLITS = ("seen", "unseen")


@dataclass(frozen=True)
class LabelSet:
    """An ordered vocabulary of L labels with a seen/unseen flag per label.

    Attributes:
        names: the L label names, in column order.
        seen: L booleans, ``True`` where the label is seen (trainable).
    """

    names: tuple[str, ...]
    seen: tuple[bool, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.seen):
            raise LabelError(f"{len(self.names)} label names but {len(self.seen)} seen flags")
        index: dict[str, int] = {}
        for i, name in enumerate(self.names):
            if not name or name != name.strip():
                raise LabelError(f"label {i} has an empty name or surrounding spaces: {name!r}")
            if name in index:
                raise LabelError(f"label {name!r} appears twice (positions {index[name]} and {i})")
            index[name] = i
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_lists(cls, seen: Sequence[str], unseen: Sequence[str]) -> LabelSet:
        """Build a set whose first labels are ``seen`` and whose last are ``unseen``."""
        return cls(tuple(seen) + tuple(unseen), (True,) * len(seen) + (False,) * len(unseen))

    @classmethod
    def from_csv(cls, path: str | Path) -> LabelSet:
        """Read a ``vocabulary.csv`` with columns ``label,split`` (split is seen or unseen)."""
        path = Path(path)
        try:
            with open_input(path, "r", what="vocabulary", newline="", encoding="utf-8-sig") as f:
                rows = list(csv.DictReader(f))
        except OSError as e:
            raise DataError(f"{path}: cannot read vocabulary ({e.strerror or e})") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: vocabulary is not UTF-8 text (byte {e.start})") from None
        except csv.Error as e:
            raise DataError(f"{path}: cannot read vocabulary ({e})") from None
        if not rows or not {"label", "split"} <= set(rows[0]):
            raise DataError(f"{path}: expected a header with columns 'label,split'")
        names, seen = [], []
        for line, row in enumerate(rows, start=2):
            split = (row["split"] or "").strip()
            if split not in SPLITS:
                raise DataError(f"{path}:{line}: split must be 'seen' or 'unseen', got {split!r}")
            names.append((row["label"] or "").strip())
            seen.append(split == "seen")
        try:
            return cls(tuple(names), tuple(seen))
        except LabelError as e:
            raise DataError(f"{path}: {e}") from None

    def to_csv(self, path: str | Path) -> None:
        """Write the set as a ``vocabulary.csv`` (columns ``label,split``)."""
        with Path(path).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "split"])
            for name, is_seen in zip(self.names, self.seen, strict=True):
                writer.writerow([name, "seen" if is_seen else "unseen"])

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Column of label ``name``; raises :class:`LabelError` when absent."""
        try:
            return self._index[name]
        except KeyError:
            raise LabelError(f"unknown label {name!r}") from None

    @property
    def seen_idx(self) -> np.ndarray:
        """Columns of the seen labels, ascending (int64 [L_seen])."""
        return np.flatnonzero(np.asarray(self.seen, dtype=bool))

    @property
    def unseen_idx(self) -> np.ndarray:
        """Columns of the unseen labels, ascending (int64 [L_unseen])."""
        return np.flatnonzero(~np.asarray(self.seen, dtype=bool))

    @property
    def seen_names(self) -> list[str]:
        """Names of the seen labels, in column order."""
        return [n for n, s in zip(self.names, self.seen, strict=True) if s]

    @property
    def unseen_names(self) -> list[str]:
        """Names of the unseen labels, in column order."""
        return [n for n, s in zip(self.names, self.seen, strict=True) if not s]


def read_vocabulary(path: Path) -> list[str]:
    """The names in a one-name-per-line file (``TagList1k.txt``), stripped, blanks skipped."""
    try:
        with open_input(path, "r", what="vocabulary", encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read vocabulary ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: vocabulary is not UTF-8 text") from None
    return [name for name in (line.strip() for line in text.splitlines()) if name]


def label_texts(names: Sequence[str], prompt: str | None) -> list[str]:
    """The texts to embed for label ``names``: each put in ``prompt`` (a template with one
    ``{}``, e.g. "a photo of a {}."), or the names as they are when ``prompt`` is ``None``."""
    return [prompt.format(name) for name in names] if prompt else list(names)
