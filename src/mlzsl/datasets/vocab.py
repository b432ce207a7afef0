"""The benchmark vocabularies: NUS-WIDE's 925 + 81 labels and Open Images V4's 7,186 + 400.

NUS-WIDE (docs/design.md, "Benchmark vocabularies"): seen = the 1,000 Flickr tags of
``TagList1k.txt`` that are not among the 81 concepts of ``Concepts81.txt`` (925, in TagList1k
order); unseen = the 81 concepts (Concepts81 order); together the 1,006-label GZSL vocabulary in
the peers' order (LESA, BiAM, (ML)²P).

Open Images V4, 2018_04 release as LESA and BiAM use it: seen = ``classes-trainable.txt`` (7,186
class ids); unseen candidates = ``unseen_labels.pkl`` (2,594 ids, a pickled numpy object array);
evaluated unseen = the 400 positions into the candidates listed in ``top_400_unseen.csv`` (which
starts with a UTF-8 byte-order mark and has no header); display names from
``class-descriptions.csv`` (``id,name``). Some names repeat across ids (e.g. two "Ball" classes);
a repeated name gets its id appended as a qualifier, ``"Ball [/m/018xm]"``, which the word-vector
embedders ignore, so both get the vector of "ball" as in the peers' label-vector files.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlzsl.errors import DataError
from mlzsl.labels import LabelSet, read_vocabulary
from mlzsl.safe_pickle import load_pickle

NUS_SEEN, NUS_UNSEEN = 925, 81
OPEN_IMAGES_SEEN, OPEN_IMAGES_CANDIDATES, OPEN_IMAGES_EVALUATED = 7186, 2594, 400
OPEN_IMAGES_FILES = (
    "classes-trainable.txt",
    "unseen_labels.pkl",
    "top_400_unseen.csv",
    "class-descriptions.csv",
)


def nus_label_set(taglist: str | Path, concepts: str | Path) -> LabelSet:
    """The NUS-WIDE GZSL vocabulary: 925 seen tags then the 81 unseen concepts."""
    tags = read_vocabulary(Path(taglist))
    unseen = read_vocabulary(Path(concepts))
    if len(set(tags)) != len(tags) or len(set(unseen)) != len(unseen):
        raise DataError(f"{taglist} or {concepts}: a name appears twice")
    concept_set = set(unseen)
    seen = [t for t in tags if t not in concept_set]
    return LabelSet.from_lists(seen, unseen)


@dataclass(frozen=True)
class OpenImagesVocabulary:
    """The Open Images V4 class lists of LESA's and BiAM's zero-shot split.

    Attributes:
        seen_ids: the 7,186 trainable class ids, in file order.
        unseen_ids: the 2,594 unseen candidate ids, in pickle order.
        evaluated: int64 [400], positions in ``unseen_ids`` of the evaluated unseen classes, in
            ``top_400_unseen.csv`` order.
        names: class id -> display name (from ``class-descriptions.csv``).
    """

    seen_ids: tuple[str, ...]
    unseen_ids: tuple[str, ...]
    evaluated: np.ndarray
    names: dict[str, str]

    def unseen(self, which: str = "evaluated") -> list[str]:
        """Unseen class ids: the 400 ``"evaluated"`` or ``"all"`` 2,594 candidates."""
        if which == "evaluated":
            return [self.unseen_ids[i] for i in self.evaluated]
        if which == "all":
            return list(self.unseen_ids)
        raise DataError(f"unseen must be 'evaluated' or 'all', got {which!r}")

    def label_set(self, which: str = "evaluated") -> LabelSet:
        """Seen then unseen (see :meth:`unseen`), named by display name, repeats qualified."""
        ids = [*self.seen_ids, *self.unseen(which)]
        names = display_names(ids, self.names)
        n_seen = len(self.seen_ids)
        return LabelSet.from_lists(names[:n_seen], names[n_seen:])

    def class_ids(self, which: str = "evaluated") -> list[str]:
        """Class ids in the column order of :meth:`label_set`."""
        return [*self.seen_ids, *self.unseen(which)]


def display_names(ids: list[str], names: dict[str, str]) -> list[str]:
    """One unique name per id: its description, with ``" [id]"`` appended where it repeats."""
    missing = [i for i in ids if i not in names]
    if missing:
        raise DataError(
            f"class-descriptions.csv has no name for {len(missing)} ids, e.g. {missing[0]}"
        )
    counts = Counter(names[i].strip() for i in ids)
    return [
        names[i].strip() if counts[names[i].strip()] == 1 else f"{names[i].strip()} [{i}]"
        for i in ids
    ]


def read_open_images_vocabulary(folder: str | Path) -> OpenImagesVocabulary:
    """Read the four class files of :data:`OPEN_IMAGES_FILES` from ``folder``."""
    folder = Path(folder)
    paths = [folder / name for name in OPEN_IMAGES_FILES]
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: missing (Open Images needs {', '.join(OPEN_IMAGES_FILES)})")
    seen = read_vocabulary(paths[0])
    unseen = _read_unseen_pickle(paths[1])
    evaluated = _read_positions(paths[2], len(unseen))
    names = _read_descriptions(paths[3])
    overlap = set(seen) & set(unseen)
    if overlap:
        raise DataError(
            f"{paths[1]}: {len(overlap)} unseen ids are also trainable, e.g. {min(overlap)}"
        )
    return OpenImagesVocabulary(tuple(seen), tuple(unseen), evaluated, names)


def _read_unseen_pickle(path: Path) -> list[str]:
    data = load_pickle(path)  # a Python 2 pickle of a numpy object array; never runs code
    ids = [str(x) for x in np.asarray(data, dtype=object).ravel()]
    if not ids or len(set(ids)) != len(ids):
        raise DataError(
            f"{path}: expected distinct class ids, got {len(ids)} ({len(set(ids))} distinct)"
        )
    return ids


def _read_positions(path: Path, n_candidates: int) -> np.ndarray:
    """Integer positions, one per line; ``utf-8-sig`` drops the file's byte-order mark."""
    values = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        text = line.strip().split(",")[0]
        if not text:
            continue
        try:
            values.append(int(text))
        except ValueError:
            raise DataError(
                f"{path}:{line_no}: expected an integer position, got {text!r}"
            ) from None
    positions = np.asarray(values, dtype=np.int64)
    if positions.size == 0 or positions.min() < 0 or positions.max() >= n_candidates:
        raise DataError(f"{path}: positions must lie in 0..{n_candidates - 1}")
    if len(np.unique(positions)) != len(positions):
        raise DataError(f"{path}: a position appears twice")
    return positions


def _read_descriptions(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r]
    bad = next((i for i, r in enumerate(rows, 1) if len(r) < 2), None)
    if bad is not None:
        raise DataError(f"{path}:{bad}: expected 'class_id,name'")
    return {r[0].strip(): r[1] for r in rows}
