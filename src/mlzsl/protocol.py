"""ZSL and GZSL evaluation of a score matrix (DESIGN.md §4), on top of :mod:`mlzsl.metrics`.

Shapes: N test images, L labels of a :class:`~mlzsl.labels.LabelSet` (seen and unseen), scores
[N, L] and targets [N, L] in {+1, −1, 0} with columns in the label set's order.

- **ZSL** ranks the unseen labels only: scores and targets restricted to the unseen columns; mAP
  is over the unseen labels.
- **GZSL** ranks seen and unseen labels together in one ranking (all L columns), with no
  calibration of seen against unseen scores; mAP is over all L labels.

:func:`evaluate` is the NUS-WIDE convention of LESA/BiAM/(ML)²P (every test image, per-label AP
over the annotated images, labels without positives count as 0). :func:`open_images_evaluate`
reports Open Images under both conventions of the literature, named ``"lesa"`` and ``"biam"``
(see :func:`mlzsl.metrics.open_images_ap_per_label`). Results are fractions inside; they become
percentages only in :meth:`EvalResult.to_dict` and :meth:`EvalResult.table`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mlzsl import metrics
from mlzsl.errors import ConfigError, DataError, LabelError
from mlzsl.labels import LabelSet

K_VALUES: dict[str, tuple[int, ...]] = {
    "nus_wide": (3, 5),
    "open_images": (10, 20),
    "scenes": (3, 5),
}
"""The K of P/R/F1@K that each dataset reports (NUS-WIDE 3, 5; Open Images 10, 20)."""

SPLITS = ("zsl", "gzsl")

PRF = tuple[float, float, float]


@dataclass(frozen=True, eq=False)
class SplitResult:
    """Metrics of one split (ZSL or GZSL), as fractions.

    Attributes:
        label_names: the L' labels scored, in column order.
        ap: float64 [L'] per-label AP.
        n_positive: int64 [L'] positives of each label among the images used.
        mean_ap: mAP over the L' labels.
        at_k: K -> (P, R, F1), overall (micro) over the images used.
        n_images: number of images used.
        weighted_map: Open Images only: Σ n_positive · ap / Σ n_positive; ``None`` otherwise.
    """

    label_names: tuple[str, ...]
    ap: np.ndarray
    n_positive: np.ndarray
    mean_ap: float
    at_k: Mapping[int, PRF]
    n_images: int
    weighted_map: float | None = None

    def to_dict(self, percent: bool = True) -> dict[str, float]:
        """``{"mAP", ["wmAP",] "P@K", "R@K", "F1@K" for each K}``; NaN stays NaN.

        Args:
            percent: scale the values to 0–100 (the papers' unit) rather than fractions.
        """
        scale = 100.0 if percent else 1.0
        out = {"mAP": self.mean_ap * scale}
        if self.weighted_map is not None:
            out["wmAP"] = self.weighted_map * scale
        for k in sorted(self.at_k):
            p, r, f1 = self.at_k[k]
            out.update({f"P@{k}": p * scale, f"R@{k}": r * scale, f"F1@{k}": f1 * scale})
        return out

    def write_csv(self, path: str | Path) -> None:
        """Write the per-label AP as CSV with columns ``label,ap,n_positive`` (ap a fraction)."""
        with Path(path).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "ap", "n_positive"])
            for name, ap, n in zip(self.label_names, self.ap, self.n_positive, strict=True):
                writer.writerow([name, repr(float(ap)), int(n)])


@dataclass(frozen=True, eq=False)
class EvalResult:
    """ZSL and GZSL results of one evaluation.

    Attributes:
        zsl: the unseen labels ranked alone.
        gzsl: seen and unseen labels ranked together.
        ks: the K of P/R/F1@K, ascending.
        variant: ``None`` for :func:`evaluate`; the Open Images convention ("lesa" or "biam")
            for :func:`open_images_evaluate`.
    """

    zsl: SplitResult
    gzsl: SplitResult
    ks: tuple[int, ...]
    variant: str | None = None

    def to_dict(self, percent: bool = True) -> dict[str, dict[str, float]]:
        """``{"zsl": {"mAP": ..., "P@3": ..., "R@3": ..., "F1@3": ..., ...}, "gzsl": {...}}``.

        Args:
            percent: values in percent (default) or as fractions.
        """
        return {"zsl": self.zsl.to_dict(percent), "gzsl": self.gzsl.to_dict(percent)}

    def table(self) -> str:
        """A plain-text table of both splits, in percent, one row per split."""
        rows = self.to_dict(percent=True)
        columns = list(rows["zsl"])
        title = "results in %"
        if self.variant:
            title += f", Open Images convention '{self.variant}'"
        header = f"{'split':<6}{'images':>8}{'labels':>8}" + "".join(f"{c:>8}" for c in columns)
        lines = [title, header]
        for split in SPLITS:
            result: SplitResult = getattr(self, split)
            cells = "".join(f"{rows[split][c]:>8.2f}" for c in columns)
            lines.append(f"{split:<6}{result.n_images:>8}{len(result.label_names):>8}{cells}")
        return "\n".join(lines)

    def write_per_label_csv(self, directory: str | Path) -> list[Path]:
        """Write ``per_label[_<variant>]_{zsl,gzsl}.csv`` (columns ``label,ap,n_positive``).

        Args:
            directory: created if missing.

        Returns:
            The two paths written, ZSL first.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        stem = f"per_label_{self.variant}" if self.variant else "per_label"
        paths = [directory / f"{stem}_{split}.csv" for split in SPLITS]
        for split, path in zip(SPLITS, paths, strict=True):
            getattr(self, split).write_csv(path)
        return paths


def evaluate(
    scores: npt.ArrayLike,
    targets: npt.ArrayLike,
    label_set: LabelSet,
    *,
    ks: Sequence[int] = K_VALUES["nus_wide"],
) -> EvalResult:
    """ZSL and GZSL mAP and P/R/F1@K under the NUS-WIDE convention (LESA, BiAM, (ML)²P).

    Args:
        scores: [N, L] finite scores, columns in ``label_set`` order.
        targets: [N, L] in {+1, −1, 0} (0 = not annotated).
        label_set: the L labels; its unseen ones form the ZSL split.
        ks: the K of P/R/F1@K (see :data:`K_VALUES`).

    Returns:
        :class:`EvalResult` with ``variant=None``.

    Raises:
        DataError: shapes do not match each other or the label set; bad values.
        LabelError: the label set has no unseen label.
        ConfigError: a K is not an integer ≥ 1, or ``ks`` is empty.
    """
    s, y, ks = _check_inputs(scores, targets, label_set, ks)
    unseen = label_set.unseen_idx
    return EvalResult(
        zsl=_split_result(s[:, unseen], y[:, unseen], _names(label_set, unseen), ks),
        gzsl=_split_result(s, y, label_set.names, ks),
        ks=ks,
    )


def open_images_evaluate(
    scores: npt.ArrayLike,
    targets: npt.ArrayLike,
    label_set: LabelSet,
    *,
    ks: Sequence[int] = K_VALUES["open_images"],
) -> dict[str, EvalResult]:
    """ZSL and GZSL results under both Open Images conventions, keyed ``"lesa"`` and ``"biam"``.

    - ``"lesa"``: as :func:`evaluate` (all images, all labels), plus the weighted mAP.
    - ``"biam"``: as BiAM's ``evaluate_openimages.py``: each split keeps only the images with a
      positive among its labels, for AP and for P/R/F1@K alike; the ZSL mAP keeps every unseen
      label (one annotated nowhere scores 0), the GZSL mAP drops labels annotated on no kept
      image, while GZSL P/R/F1@K still rank all L labels; per-label AP pools whole rows (see
      :func:`mlzsl.metrics.open_images_ap_per_label`).

    Args:
        scores: [N, L] finite scores, columns in ``label_set`` order.
        targets: [N, L] in {+1, −1, 0}.
        label_set: the L labels; its unseen ones form the ZSL split.
        ks: the K of P/R/F1@K.

    Returns:
        ``{"lesa": EvalResult, "biam": EvalResult}``, each with ``variant`` set to its key and
        ``weighted_map`` filled in.
    """
    s, y, ks = _check_inputs(scores, targets, label_set, ks)
    unseen = label_set.unseen_idx
    zsl_names, all_names = _names(label_set, unseen), label_set.names
    results = {}
    for convention in metrics.OPEN_IMAGES_CONVENTIONS:
        zsl = _open_images_split(s[:, unseen], y[:, unseen], zsl_names, ks, convention, False)
        gzsl = _open_images_split(s, y, all_names, ks, convention, convention == "biam")
        results[convention] = EvalResult(zsl=zsl, gzsl=gzsl, ks=ks, variant=convention)
    return results


def _split_result(
    s: np.ndarray, y: np.ndarray, names: Sequence[str], ks: tuple[int, ...]
) -> SplitResult:
    """NUS-WIDE-convention metrics of one split (s, y [N, L'])."""
    ap = metrics.average_precision_per_label(y, s)
    return SplitResult(
        label_names=tuple(names),
        ap=ap,
        n_positive=np.count_nonzero(y == 1, axis=0).astype(np.int64),
        mean_ap=float(np.mean(ap)),
        at_k=_at_k(y, s, ks),
        n_images=y.shape[0],
    )


def _open_images_split(
    s: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    ks: tuple[int, ...],
    convention: str,
    drop_unannotated_labels: bool,
) -> SplitResult:
    """Metrics of one split (s, y [N, L']) under an Open Images convention."""
    per_label = metrics.open_images_ap_per_label(
        y, s, convention, drop_unannotated_labels=drop_unannotated_labels
    )
    mean_ap, weighted_map = metrics.weighted_means(per_label.ap, per_label.n_positive)
    if convention == "biam":  # BiAM scores P/R/F1 on the images with a positive only
        keep = (y == 1).any(axis=1)
        s, y = s[keep], y[keep]
    return SplitResult(
        label_names=tuple(names[i] for i in per_label.labels),
        ap=per_label.ap,
        n_positive=per_label.n_positive,
        mean_ap=mean_ap,
        at_k=_at_k(y, s, ks),
        n_images=y.shape[0],
        weighted_map=weighted_map,
    )


def _at_k(y: np.ndarray, s: np.ndarray, ks: tuple[int, ...]) -> dict[int, PRF]:
    """K -> (P, R, F1); all NaN when no image is left to rank."""
    if y.shape[0] == 0:
        return {k: (float("nan"),) * 3 for k in ks}
    return {k: metrics.precision_recall_f1_at_k(y, s, k) for k in ks}


def _names(label_set: LabelSet, columns: np.ndarray) -> tuple[str, ...]:
    """Names of the given columns of the label set."""
    return tuple(label_set.names[i] for i in columns)


def _check_inputs(
    scores: npt.ArrayLike, targets: npt.ArrayLike, label_set: LabelSet, ks: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """(scores, targets, ks) checked against the label set; ks sorted and deduplicated."""
    s, y = np.asarray(scores), np.asarray(targets)
    if s.ndim != 2 or s.shape[1] != len(label_set):
        raise DataError(
            f"scores must be [N, {len(label_set)}], one column per label of the set; got {s.shape}"
        )
    if y.shape != s.shape:
        raise DataError(f"targets {y.shape} must have the shape of scores {s.shape}")
    if len(label_set.unseen_idx) == 0:
        raise LabelError("the label set has no unseen label; ZSL needs at least one")
    return s, y, _check_ks(ks)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Sorted distinct K values, each an integer ≥ 1."""
    if isinstance(ks, int | str) or not len(ks):
        raise ConfigError(f"ks must be a non-empty sequence of integers >= 1, got {ks!r}")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ConfigError(f"each K must be an integer >= 1, got {k!r} in ks={ks!r}")
    return tuple(sorted({int(k) for k in ks}))
