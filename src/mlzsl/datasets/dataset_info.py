"""What a data folder or store is a copy of, and which test-set variant it holds.

A converter (``mlzsl data nus-wide``, ``mlzsl data open-images``, a peer-feature import) writes
``dataset.json`` next to ``labels.csv``; ``mlzsl extract`` copies it into the store's attributes
(key ``dataset``), so every result computed on the store can say which test set it came from:
the official one whole, or the subset a user could download. Published numbers are only
comparable on the same variant.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

from mlzsl.errors import DataError

DATASET_FILE = "dataset.json"

EvaluationKind = Literal["default", "open_images"]
"""How a benchmark is evaluated (dataset.json ``evaluation``): ``"default"`` is the NUS-WIDE
convention (also user data), ``"open_images"`` both Open Images conventions (LESA's, BiAM's)."""

EVALUATION_KINDS: tuple[EvaluationKind, ...] = get_args(EvaluationKind)


@dataclass(frozen=True)
class DatasetInfo:
    """Identity of a benchmark copy.

    Attributes:
        name: the benchmark, e.g. ``"NUS-WIDE"`` or ``"Open Images V4"``.
        official_test_images: images in the benchmark's official test set (NUS-WIDE: 107,859);
            ``None`` when there is no official count.
        evaluation: ``"default"`` (mAP and P/R/F1@K as docs/design.md, "The protocol",
            defines them) or ``"open_images"`` (report both Open Images conventions, LESA's and
            BiAM's).
        source: where the copy came from (a release folder, a peer's feature file).
    """

    name: str
    official_test_images: int | None = None
    evaluation: EvaluationKind = "default"
    source: str = ""

    def __post_init__(self) -> None:
        if self.evaluation not in EVALUATION_KINDS:
            raise DataError(
                f"dataset {self.name!r}: evaluation must be one of {', '.join(EVALUATION_KINDS)}, "
                f"got {self.evaluation!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> DatasetInfo:
        """Build from a dict read from ``where`` (named in errors)."""
        try:
            return cls(
                name=str(data["name"]),
                official_test_images=(
                    None
                    if data.get("official_test_images") is None
                    else int(data["official_test_images"])
                ),
                # checked by __post_init__
                evaluation=cast(EvaluationKind, str(data.get("evaluation", "default"))),
                source=str(data.get("source", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{where}: malformed dataset description ({e!r})") from None

    def test_set_line(self, n_test: int) -> str:
        """One line naming the test-set variant of a copy with ``n_test`` test images."""
        if self.official_test_images is None:
            return f"{self.name} test set: {n_test:,} images"
        if n_test == self.official_test_images:
            return f"{self.name} test set: official, all {n_test:,} images"
        return (
            f"{self.name} test set: available subset, {n_test:,} of the "
            f"{self.official_test_images:,} official images — not comparable with published "
            "figures computed on the whole set"
        )


def write_dataset_info(data_dir: str | Path, info: DatasetInfo) -> Path:
    """Write ``data_dir/dataset.json`` atomically; returns its path."""
    path = Path(data_dir) / DATASET_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_dataset_info(data_dir: str | Path) -> DatasetInfo | None:
    """``data_dir/dataset.json`` if the folder has one, else ``None``."""
    path = Path(data_dir) / DATASET_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read dataset description ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return DatasetInfo.from_dict(data, str(path))


def store_dataset_info(meta: dict[str, Any]) -> DatasetInfo | None:
    """The dataset description kept in a store's attributes (``meta["dataset"]``), if any."""
    raw = meta.get("dataset")
    if not raw:
        return None
    try:
        data = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except ValueError as e:
        raise DataError(f"store attribute 'dataset' is not JSON ({e})") from None
    return DatasetInfo.from_dict(data, "store attribute 'dataset'")
