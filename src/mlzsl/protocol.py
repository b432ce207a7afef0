"""ZSL and GZSL evaluation of a score matrix (docs/design.md, "The protocol"), on top of
:mod:`mlzsl.metrics`.

Shapes: N test images, L labels of a :class:`~mlzsl.labels.LabelSet` (seen and unseen), scores
[N, L] and targets [N, L] in {+1, −1, 0} with columns in the label set's order.

- **ZSL** ranks the unseen labels only: scores and targets restricted to the unseen columns; mAP
  is over the unseen labels.
- **GZSL** ranks seen and unseen labels together in one ranking (all L columns), with no
  calibration of seen against unseen scores; mAP is over all L labels.

:func:`evaluate` (also ``mlzsl.evaluate``) applies the conventions a benchmark reports (its
:data:`~mlzsl.datasets.dataset_info.EvaluationKind`) and returns one :class:`Results`: every
convention's :class:`EvalResult` and the *primary* one, which selects checkpoints (BiAM's on Open
Images, the regime of (ML)²P's published Open Images figures).

It is built from one function per kind. :func:`evaluate_default` is the default convention, the
NUS-WIDE one of LESA/BiAM/(ML)²P (every test image, per-label AP over the annotated images,
labels without positives count as 0). :func:`evaluate_open_images` reports Open Images under both
conventions of the literature, named ``"lesa"`` and ``"biam"`` (see
:func:`mlzsl.metrics.open_images_ap_per_label`). Results are fractions inside; they become
percentages only in :meth:`EvalResult.to_dict` and :meth:`EvalResult.table`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlzsl import metrics
from mlzsl.datasets.dataset_info import EVALUATION_KINDS, EvaluationKind
from mlzsl.errors import ConfigError, DataError, LabelError
from mlzsl.files import atomic_write
from mlzsl.labels import LabelSet

SCORES_FLOAT16_ABOVE = 20_000_000  # scores.npz keeps float32 up to this many values

K_VALUES: dict[str, tuple[int, ...]] = {
    "nus_wide": (3, 5),
    "open_images": (10, 20),
}
"""The K of P/R/F1@K that each dataset reports (NUS-WIDE 3, 5; Open Images 10, 20)."""

SPLITS = ("zsl", "gzsl")

PRIMARY_CONVENTION: dict[EvaluationKind, str] = {"default": "default", "open_images": "biam"}
"""Per evaluation kind: the convention that selects checkpoints and fills ``Results.primary``."""

CONVENTION_TITLES = {"default": "default", "lesa": "LESA convention", "biam": "BiAM convention"}

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
        with atomic_write(path, newline="", what="per-label AP table") as f:
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
        convention: ``None`` for the default convention (:func:`evaluate_default`); the Open
            Images convention ("lesa" or "biam") for :func:`evaluate_open_images`.
    """

    zsl: SplitResult
    gzsl: SplitResult
    ks: tuple[int, ...]
    convention: str | None = None

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
        if self.convention:
            title += f", Open Images convention '{self.convention}'"
        header = f"{'split':<6}{'images':>8}{'labels':>8}" + "".join(f"{c:>8}" for c in columns)
        lines = [title, header]
        for split in SPLITS:
            result: SplitResult = getattr(self, split)
            cells = "".join(f"{rows[split][c]:>8.2f}" for c in columns)
            lines.append(f"{split:<6}{result.n_images:>8}{len(result.label_names):>8}{cells}")
        return "\n".join(lines)

    def write_per_label_csv(self, directory: str | Path) -> list[Path]:
        """Write ``per_label[_<convention>]_{zsl,gzsl}.csv`` (columns ``label,ap,n_positive``).

        Args:
            directory: created if missing.

        Returns:
            The two paths written, ZSL first.
        """
        directory = Path(directory)  # created by atomic_write, an OSError in one line
        stem = f"per_label_{self.convention}" if self.convention else "per_label"
        paths = [directory / f"{stem}_{split}.csv" for split in SPLITS]
        for split, path in zip(SPLITS, paths, strict=True):
            getattr(self, split).write_csv(path)
        return paths


@dataclass(frozen=True, eq=False)
class Results:
    """One evaluation under every convention of its benchmark.

    Attributes:
        by_convention: convention -> result; ``{"default"}`` for NUS-WIDE and user data,
            ``{"lesa", "biam"}`` for Open Images.
        primary_convention: the key of the result that selects checkpoints.
    """

    by_convention: Mapping[str, EvalResult]
    primary_convention: str
    scores: np.ndarray | None = field(default=None, repr=False)
    """The [N, L] scores evaluated (kept by :func:`evaluate`; ``None`` otherwise)."""
    targets: np.ndarray | None = field(default=None, repr=False)
    """The [N, L] targets in {+1, −1, 0} that go with :attr:`scores`."""
    label_set: LabelSet | None = field(default=None, repr=False)
    """The label set of the columns of :attr:`scores`."""

    @property
    def primary(self) -> EvalResult:
        """The result that selects checkpoints and that one-line summaries show."""
        return self.by_convention[self.primary_convention]

    @property
    def ks(self) -> tuple[int, ...]:
        """The K of P/R/F1@K."""
        return self.primary.ks

    def to_dict(self) -> dict[str, Any]:
        """``{"zsl", "gzsl"}`` in percent for one convention; for several, one such dict per
        convention and ``"selected_by"``, the primary convention."""
        if len(self.by_convention) == 1:
            return self.primary.to_dict()
        out: dict[str, Any] = {k: r.to_dict() for k, r in self.by_convention.items()}
        out["selected_by"] = self.primary_convention
        return out

    def by_convention_dict(self) -> dict[str, dict[str, dict[str, float]]]:
        """Convention -> ``EvalResult.to_dict()`` (percent)."""
        return {key: result.to_dict() for key, result in self.by_convention.items()}

    def columns(self) -> dict[str, float]:
        """Flat metric columns: ``zsl.mAP`` for one convention, ``biam.zsl.mAP`` for several."""
        row = {}
        for key, result in self.by_convention.items():
            prefix = "" if len(self.by_convention) == 1 else f"{key}."
            for split, values in result.to_dict().items():
                row.update({f"{prefix}{split}.{name}": float(v) for name, v in values.items()})
        return row

    def metric(self, key: str) -> float:
        """``split.name`` of the primary result, or ``convention.split.name`` (percent)."""
        parts = key.split(".")
        result = self.primary
        if len(parts) == 3 and parts[0] in self.by_convention:
            result, parts = self.by_convention[parts[0]], parts[1:]
        try:
            split, name = parts
            return float(result.to_dict()[split][name])
        except (KeyError, ValueError):
            raise ConfigError(f"select_metric {key!r} is not a reported metric") from None

    def write_per_label_csv(self, directory: str | Path) -> list[Path]:
        """``per_label[_<convention>]_{zsl,gzsl}.csv`` of every convention; the paths written."""
        return [p for r in self.by_convention.values() for p in r.write_per_label_csv(directory)]

    def write_scores(self, directory: str | Path) -> Path | None:
        """Write ``scores.npz`` (compressed): ``scores`` [N, L] (float32, float16 above
        :data:`SCORES_FLOAT16_ABOVE` values), ``targets`` [N, L] int8, ``labels`` (names) and
        ``seen`` (bool [L]); what ``mlzsl report`` draws precision–recall curves from.

        Returns:
            The path written, or ``None`` when these results kept no scores.
        """
        if self.scores is None or self.targets is None or self.label_set is None:
            return None
        scores = np.asarray(self.scores)
        dtype = np.float16 if scores.size > SCORES_FLOAT16_ABOVE else np.float32
        path = Path(directory) / "scores.npz"
        with atomic_write(path, "wb", what="scores") as f:
            np.savez_compressed(
                f,
                scores=scores.astype(dtype),
                targets=np.asarray(self.targets).astype(np.int8),
                labels=np.asarray(self.label_set.names, dtype=str),
                seen=np.asarray(self.label_set.seen, dtype=bool),
            )
        return path


def resolve_ks(ks: Sequence[int] | None, evaluation: EvaluationKind) -> tuple[int, ...]:
    """The K values to report: ``ks`` as given, or the benchmark's when ``None``.

    ``None`` (a config's default) is (10, 20) on an Open Images store, (3, 5) on any other.
    """
    if ks is None:
        return K_VALUES["open_images" if evaluation == "open_images" else "nus_wide"]
    return tuple(int(k) for k in ks)


def evaluate(
    scores: npt.ArrayLike,
    targets: npt.ArrayLike,
    label_set: LabelSet,
    *,
    ks: Sequence[int] | None = None,
    evaluation: EvaluationKind = "default",
) -> Results:
    """Every convention that ``evaluation`` reports, as one :class:`Results`.

    ``"default"`` (NUS-WIDE, user data) reports :func:`evaluate_default` alone; ``"open_images"``
    reports both conventions of :func:`evaluate_open_images`, BiAM's primary. A store's kind is
    its dataset.json ``evaluation`` (:attr:`mlzsl.datasets.dataset_info.DatasetInfo.evaluation`).

    Args:
        scores: [N, L] finite scores, columns in ``label_set`` order.
        targets: [N, L] in {+1, −1, 0} (0 = not annotated).
        label_set: the L labels; its unseen ones form the ZSL split.
        ks: the K of P/R/F1@K; ``None`` is the benchmark's (:func:`resolve_ks`).
        evaluation: one of :data:`~mlzsl.datasets.dataset_info.EVALUATION_KINDS`.

    Raises:
        ConfigError: ``evaluation`` is not a known kind; a K is not an integer ≥ 1.
        DataError, LabelError: as :func:`evaluate_default`.
    """
    if evaluation not in EVALUATION_KINDS:
        raise ConfigError(
            f"evaluation must be one of {', '.join(EVALUATION_KINDS)}, got {evaluation!r}"
        )
    chosen = resolve_ks(ks, evaluation)
    if evaluation == "open_images":
        by_convention = evaluate_open_images(scores, targets, label_set, ks=chosen)
    else:
        by_convention = {"default": evaluate_default(scores, targets, label_set, ks=chosen)}
    return Results(
        by_convention,
        PRIMARY_CONVENTION[evaluation],
        scores=np.asarray(scores),
        targets=np.asarray(targets),
        label_set=label_set,
    )


def evaluate_default(
    scores: npt.ArrayLike,
    targets: npt.ArrayLike,
    label_set: LabelSet,
    *,
    ks: Sequence[int] = K_VALUES["nus_wide"],
) -> EvalResult:
    """ZSL and GZSL mAP and P/R/F1@K under the default convention, NUS-WIDE's (LESA, BiAM,
    (ML)²P). Not the Open Images conventions: :func:`evaluate` picks by benchmark.

    Args:
        scores: [N, L] finite scores, columns in ``label_set`` order.
        targets: [N, L] in {+1, −1, 0} (0 = not annotated).
        label_set: the L labels; its unseen ones form the ZSL split.
        ks: the K of P/R/F1@K (see :data:`K_VALUES`).

    Returns:
        :class:`EvalResult` with ``convention=None``.

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


def evaluate_open_images(
    scores: npt.ArrayLike,
    targets: npt.ArrayLike,
    label_set: LabelSet,
    *,
    ks: Sequence[int] = K_VALUES["open_images"],
) -> dict[str, EvalResult]:
    """ZSL and GZSL results under both Open Images conventions, keyed ``"lesa"`` and ``"biam"``.

    - ``"lesa"``: as :func:`evaluate_default` (all images, all labels), plus the weighted mAP.
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
        ``{"lesa": EvalResult, "biam": EvalResult}``, each with ``convention`` set to its key and
        ``weighted_map`` filled in.
    """
    s, y, ks = _check_inputs(scores, targets, label_set, ks)
    unseen = label_set.unseen_idx
    zsl_names, all_names = _names(label_set, unseen), label_set.names
    results = {}
    for convention in metrics.OPEN_IMAGES_CONVENTIONS:
        zsl = _open_images_split(s[:, unseen], y[:, unseen], zsl_names, ks, convention, False)
        gzsl = _open_images_split(s, y, all_names, ks, convention, convention == "biam")
        results[convention] = EvalResult(zsl=zsl, gzsl=gzsl, ks=ks, convention=convention)
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
