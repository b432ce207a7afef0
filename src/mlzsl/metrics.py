"""Multi-label ranking metrics of the MLZSL protocol (docs/design.md, "The protocol"), numpy only.

Shapes: N images, L labels. ``y_true`` is an [N, L] matrix with values in {+1, −1, 0}:
+1 the label is present, −1 it is absent, 0 it is not annotated. ``y_score`` is an [N, L]
matrix of finite real scores, higher meaning "more likely present". Every value returned is a
fraction in [0, 1] (or NaN where stated), never a percentage.

Definitions
-----------
**Average precision of label c** (:func:`average_precision_per_label`). Take the images i with
``|y[i, c]| = 1`` (images not annotated for c are left out). If none of them is positive,
AP_c = 0 and the label *stays* in the mean. Otherwise AP_c is scikit-learn's
``average_precision_score(y[:, c] > 0, s[:, c])`` over those images: the step-wise sum
``Σ_t (R_t − R_{t−1}) · P_t`` over the distinct score thresholds t, so tied scores form one
step and the result never depends on input order. Equivalently, AP_c is the mean, over the
positives p, of the precision of the set {i : s[i, c] ≥ s[p, c]}. This is the NUS-WIDE
convention of LESA (github.com/hbdat/cvpr20_LESA, ``core/utils.py::compute_AP``), which BiAM
(github.com/akshitac8/BiAM, ``util_nus.py::compute_AP``) and (ML)²P-Encoder reuse.

**mAP** (:func:`mean_average_precision`): the mean of AP_c over all L labels.

**P/R/F1@K, "overall" (micro)** (:func:`precision_recall_f1_at_k`), as LESA's
``core/utils.py::compute_F1(mode_F1='overall')`` and BiAM's ``compute_F1``: each image predicts
its K highest-scoring labels (all L labels when K > L). TP = number of predicted (i, c) with
``y[i, c] = +1``. P = TP / (N · min(K, L)), counting every image, also those without any
positive; R = TP / number of (i, c) with ``y[i, c] = +1``; F1 = 2PR / (P + R).

- K > L: every label is predicted, so each image makes min(K, L) = L predictions and that is
  the denominator of P. It is what LESA's code does: ``argsort(...)[-k:]`` yields all L indices
  and P divides by the number of predictions made (``np.sum(mask)``). BiAM's ``torch.topk``
  refuses K > L.
- Ties at the K-th place: among equal scores the lower label index is predicted first; this is
  a stable sort on −score. (The peers leave it to ``np.argsort``/``torch.topk``, whose order of
  ties is unspecified.)
- No positive at all in ``y_true``: R and F1 are NaN (0/0, as in the peers' code); P is 0.
- Positives exist but TP = 0: P = R = 0 and F1 = 0/0 = NaN, as in the peers' code.

**Open Images** (:func:`open_images_map`, :func:`open_images_ap_per_label`): papers report mAP
under two conventions. Each is given here with a weighted mAP too, Σ_c n_c · AP_c / Σ_c n_c
with n_c the number of positives of label c among the images used (NaN when Σ n_c = 0).

- ``"lesa"``: per-label AP exactly as above, over all test images and all labels (LESA's
  ``zeroshot_experiments/OpenImage_evaluate_top_multi_label.py`` goes through
  ``core/utils.py::evaluate_zs_df_OpenImage`` to ``evaluate``, whose default ``exclude=False``
  keeps every image, then ``compute_AP``). LESA's code prints no weighted mean; it is reported
  here, with the same weights as BiAM's, so that the two conventions can be set side by side.
- ``"biam"``: BiAM's ``evaluate_openimages.py`` with ``util_openimages.py::compute_AP``; see
  :func:`open_images_ap_per_label` for each of its quirks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from mlzsl.errors import ConfigError, DataError

Convention = Literal["lesa", "biam"]
OPEN_IMAGES_CONVENTIONS: tuple[str, ...] = ("lesa", "biam")

# Work on blocks of about this many matrix entries, so the float64 copies of a
# 107,859 x 1,006 NUS-WIDE test matrix never exist whole at once.
_BLOCK = 1 << 22


class LabelAP(NamedTuple):
    """Per-label AP of an Open Images convention.

    Attributes:
        labels: int64 [L'] columns of ``y_true`` that were scored, ascending.
        ap: float64 [L'] AP of each of those labels, fractions.
        n_positive: int64 [L'] positives of each label among the images used (the weights).
    """

    labels: np.ndarray
    ap: np.ndarray
    n_positive: np.ndarray


def average_precision_per_label(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> np.ndarray:
    """AP of every label over the images annotated for it (module docstring, "Average precision").

    Args:
        y_true: [N, L] values in {+1, −1, 0}; 0 = not annotated, left out for that label.
        y_score: [N, L] finite scores.

    Returns:
        float64 [L]: AP_c in [0, 1]; 0 where label c has no annotated positive.

    Raises:
        DataError: shapes differ or are not 2-D, ``y_true`` has another value, a score is not
            finite, or there is no image or no label.
    """
    y, s = _check_pair(y_true, y_score)
    return _ap_per_column(y, s)


def mean_average_precision(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> float:
    """Mean over all L labels of :func:`average_precision_per_label`.

    Labels without an annotated positive count as AP 0 and stay in the mean.
    """
    return float(np.mean(average_precision_per_label(y_true, y_score)))


def precision_recall_f1_at_k(
    y_true: npt.ArrayLike, y_score: npt.ArrayLike, k: int
) -> tuple[float, float, float]:
    """Overall (micro) precision, recall and F1 of each image's top-K labels.

    See the module docstring for the definition and the rules for K > L (P's denominator is
    N · min(K, L)), ties at the K-th place (lower label index wins) and NaN (no positive at all:
    R = F1 = NaN; TP = 0: F1 = NaN).

    Args:
        y_true: [N, L] values in {+1, −1, 0}; only +1 counts as a hit.
        y_score: [N, L] finite scores.
        k: number of labels each image predicts, ≥ 1.

    Returns:
        (P, R, F1) as fractions.

    Raises:
        ConfigError: ``k`` is not an integer ≥ 1.
        DataError: as :func:`average_precision_per_label`.
    """
    k = _check_k(k)
    y, s = _check_pair(y_true, y_score)
    n, n_labels = y.shape
    tp = _true_positives_at_k(y, s, k)
    n_true = int(np.count_nonzero(y == 1))
    precision = tp / (n * min(k, n_labels))
    recall = tp / n_true if n_true else float("nan")
    return precision, recall, _f1(precision, recall)


def open_images_ap_per_label(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    convention: Convention | str,
    *,
    drop_unannotated_labels: bool = False,
) -> LabelAP:
    """Per-label AP and weights under one Open Images convention.

    ``"lesa"``: all N images, all L labels, AP as :func:`average_precision_per_label`;
    ``drop_unannotated_labels`` must be False.

    ``"biam"`` reproduces ``evaluate_openimages.py`` and ``util_openimages.py::compute_AP`` of
    github.com/akshitac8/BiAM, quirks included:

    1. Only images with ≥ 1 positive among the L labels given are kept (``temp_400`` /
       ``temp_7586`` in ``evaluate_openimages.py``); the weights count positives among them.
    2. ``drop_unannotated_labels=True`` then drops the labels with no annotation (+1 or −1)
       among the kept images, as BiAM's seen and GZSL blocks do (``mask``); its ZSL block
       (400 unseen labels) keeps them (``False``) and each scores AP 0 inside the mean.
    3. The AP of label c is *not* computed on column c: ``compute_AP`` takes the kept images
       annotated for c and pools every annotated (image, label) entry of those rows, over all
       L labels, into one flat ranking, and AP_c is the AP of that pool. So a label whose
       annotations are all negative still gets AP > 0 from the other labels of its rows.
    4. AP_c = 0 when that pool has no positive, i.e. when no kept image is annotated for c.
    5. BiAM sorts the pool with ``torch.sort`` and sums ``tp/(tp+fp)`` at every positive, so
       its value under tied scores depends on the sort order. Here tied scores form one step
       (as scikit-learn does), which equals BiAM's value whenever the pool has no ties.

    Cost of ``"biam"``: the pools hold Σ_i a_i² entries in all, a_i being the number of labels
    annotated on image i. That is small on Open Images' sparse annotation (a few labels per
    image) but grows as N · L² on a fully annotated matrix.

    Args:
        y_true: [N, L] values in {+1, −1, 0}.
        y_score: [N, L] finite scores.
        convention: ``"lesa"`` or ``"biam"``.
        drop_unannotated_labels: ``"biam"`` only; see quirk 2.

    Returns:
        :class:`LabelAP` with the labels scored, their AP and their positive counts.

    Raises:
        ConfigError: unknown convention, or ``drop_unannotated_labels`` with ``"lesa"``.
        DataError: as :func:`average_precision_per_label`.
    """
    _check_convention(convention, drop_unannotated_labels)
    y, s = _check_pair(y_true, y_score)
    if convention == "lesa":
        labels = np.arange(y.shape[1])
        return LabelAP(labels, _ap_per_column(y, s), _positives(y))
    return _biam_ap_per_label(y, s, drop_unannotated_labels)


def open_images_map(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    convention: Convention | str,
    *,
    drop_unannotated_labels: bool = False,
) -> tuple[float, float]:
    """(mAP, weighted mAP) under an Open Images convention.

    The per-label AP and the images and labels used are those of
    :func:`open_images_ap_per_label`. mAP is the plain mean of the per-label AP over the labels
    scored; the weighted mAP is Σ n_c · AP_c / Σ n_c with n_c the positives of label c among
    the images used. Either is NaN when there is nothing to average (no label left, or no
    positive at all).

    Args:
        y_true: [N, L] values in {+1, −1, 0}.
        y_score: [N, L] finite scores.
        convention: ``"lesa"`` or ``"biam"``.
        drop_unannotated_labels: ``"biam"`` only; False reproduces BiAM's ZSL block, True its
            seen and GZSL blocks.

    Returns:
        (mAP, weighted mAP) as fractions.
    """
    result = open_images_ap_per_label(
        y_true, y_score, convention, drop_unannotated_labels=drop_unannotated_labels
    )
    return weighted_means(result.ap, result.n_positive)


def weighted_means(ap: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(plain mean, weighted mean) of per-label AP; NaN where the mean is over nothing.

    Args:
        ap: float [L'] per-label AP.
        weights: [L'] non-negative weights (positives per label).
    """
    mean = float(np.mean(ap)) if ap.size else float("nan")
    total = float(np.sum(weights))
    weighted = float(np.dot(weights, ap) / total) if total > 0 else float("nan")
    return mean, weighted


# --------------------------------------------------------------------------- validation


def _check_pair(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return (y int8 [N, L], s float [N, L]); s keeps its dtype (cast per block)."""
    y = np.asarray(y_true)
    s = np.asarray(y_score)
    if y.ndim != 2 or s.ndim != 2:
        raise DataError(f"y_true and y_score must be 2-D [N, L]; got {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise DataError(f"y_true {y.shape} and y_score {s.shape} must have the same shape")
    if 0 in y.shape:
        raise DataError(f"expected at least one image and one label, got shape {y.shape}")
    return _check_labels(y), _check_scores(s)


def _check_labels(y: np.ndarray) -> np.ndarray:
    """The label matrix as int8, checked to hold only +1, -1 and 0.

    A boolean matrix is refused: its False would read as "not annotated", not as "absent".
    """
    if y.dtype == np.bool_ or not (np.issubdtype(y.dtype, np.number)):
        raise DataError(f"y_true must be numeric with values in {{+1, -1, 0}}, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.integer):
        valid = bool(y.min() >= -1 and y.max() <= 1)
    else:
        valid = bool(np.all((y == 1) | (y == 0) | (y == -1)))
    if not valid:
        found = np.unique(y)[:8].tolist()
        raise DataError(f"y_true values must be +1, -1 or 0 (0 = not annotated); found {found}")
    return y.astype(np.int8, copy=False)


def _check_scores(s: np.ndarray) -> np.ndarray:
    """The score matrix, checked to be real and finite."""
    if s.dtype == np.bool_ or not np.issubdtype(s.dtype, np.number):
        raise DataError(f"y_score must be real numbers, got dtype {s.dtype}")
    if np.iscomplexobj(s):
        raise DataError("y_score must be real numbers, got complex")
    if not np.all(np.isfinite(s)):
        raise DataError(f"y_score must be finite; found {int(np.sum(~np.isfinite(s)))} NaN/inf")
    return s


def _check_k(k: int) -> int:
    """K as a Python int, ≥ 1."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def _check_convention(convention: str, drop_unannotated_labels: bool) -> None:
    """Refuse an unknown convention, or dropping labels under LESA's (which keeps them all)."""
    if convention not in OPEN_IMAGES_CONVENTIONS:
        raise ConfigError(
            f"Open Images convention must be one of {OPEN_IMAGES_CONVENTIONS}, got {convention!r}"
        )
    if convention == "lesa" and drop_unannotated_labels:
        raise ConfigError("drop_unannotated_labels applies to the 'biam' convention only")


# --------------------------------------------------------------------------- average precision


def _ap_of_ranking(score: np.ndarray, y: np.ndarray) -> float:
    """AP of one ranking, ties grouped as scikit-learn does; 0 without a positive.

    Args:
        score: float64 [M] scores.
        y: [M] values in {+1, −1, 0}; 0 entries are ignored.
    """
    pos = np.sort(score[y == 1])  # [P] ascending
    if pos.size == 0:
        return 0.0
    neg = np.sort(score[y == -1])  # [Q] ascending
    # Precision at the threshold of each positive: everything scoring >= it is predicted, so a
    # tie group is one step of the precision-recall curve.
    tp = pos.size - np.searchsorted(pos, pos, side="left")  # [P] positives with score >= it
    fp = neg.size - np.searchsorted(neg, pos, side="left")  # [P] negatives with score >= it
    return float(np.mean(tp / (tp + fp)))


def _ap_per_column(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AP of every column of (y [N, L], s [N, L]), over a few columns at a time."""
    n, n_labels = y.shape
    ap = np.zeros(n_labels)
    step = max(1, _BLOCK // n)
    for c0 in range(0, n_labels, step):
        s_block = _columns(s, c0, c0 + step, np.float64)  # [l, N]
        y_block = _columns(y, c0, c0 + step, np.int8)  # [l, N]
        for j in range(s_block.shape[0]):
            ap[c0 + j] = _ap_of_ranking(s_block[j], y_block[j])
    return ap


def _columns(a: np.ndarray, start: int, stop: int, dtype: type) -> np.ndarray:
    """C-contiguous [stop - start, N] copy of columns start:stop of a [N, L] matrix.

    The columns are sliced first (row by row) and the narrow block then transposed: much faster
    than gathering the columns of a wide row-major matrix directly.
    """
    block = np.ascontiguousarray(a[:, start:stop])  # [N, l]
    return np.ascontiguousarray(block.T, dtype=dtype)


def _positives(y: np.ndarray) -> np.ndarray:
    """int64 [L] number of +1 entries per label."""
    return np.count_nonzero(y == 1, axis=0).astype(np.int64)


def _biam_ap_per_label(y: np.ndarray, s: np.ndarray, drop_unannotated_labels: bool) -> LabelAP:
    """BiAM's Open Images AP (quirks 1-5 of :func:`open_images_ap_per_label`)."""
    n_labels = y.shape[1]
    rows, cols, flat_y, flat_s = _annotated_entries_of_positive_images(y, s)
    labels = np.arange(n_labels)
    if drop_unannotated_labels:  # labels annotated nowhere among the kept images
        labels = np.flatnonzero(np.bincount(cols, minlength=n_labels))
    ap = np.zeros(len(labels))
    for j, pool in enumerate(_row_pools(rows, cols, y.shape, labels)):
        ap[j] = _ap_of_ranking(flat_s[pool], flat_y[pool])
    n_positive = np.bincount(cols[flat_y == 1], minlength=n_labels)[labels]
    return LabelAP(labels, ap, n_positive.astype(np.int64))


def _row_pools(
    rows: np.ndarray, cols: np.ndarray, shape: tuple[int, ...], labels: np.ndarray
) -> Iterator[np.ndarray]:
    """For each label c in ``labels``: the positions, in the row-major entry list (rows, cols),
    of every entry of the images that have an entry in column c (quirk 3)."""
    row_ptr = np.searchsorted(rows, np.arange(shape[0] + 1))  # row r: [row_ptr[r], row_ptr[r+1])
    by_col = np.argsort(cols, kind="stable")
    rows_by_col = rows[by_col]  # images annotated for each label, label after label
    col_ptr = np.searchsorted(cols[by_col], np.arange(shape[1] + 1))
    for c in labels:
        rows_c = rows_by_col[col_ptr[c] : col_ptr[c + 1]]  # images annotated for label c
        yield _gather_ranges(row_ptr[rows_c], row_ptr[rows_c + 1])


def _annotated_entries_of_positive_images(
    y: np.ndarray, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Annotated (y != 0) entries of the images with >= 1 positive (quirk 1), row-major.

    Works on the entries only, so a sparse Open Images matrix is never copied whole.

    Returns:
        rows [M], cols [M] (int64), their labels y [M] (int8) and scores s [M] (float64).
    """
    rows, cols = np.divmod(np.flatnonzero(y), y.shape[1])
    flat_y = y[rows, cols]
    has_positive = np.bincount(rows[flat_y == 1], minlength=y.shape[0]) > 0  # [N]
    keep = has_positive[rows]
    rows, cols, flat_y = rows[keep], cols[keep], flat_y[keep]
    return rows, cols, flat_y, s[rows, cols].astype(np.float64)


def _gather_ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[j], stops[j])`` over j, without a Python loop."""
    lengths = stops - starts
    offsets = starts - (np.cumsum(lengths) - lengths)  # [J] start minus place in the output
    return np.repeat(offsets, lengths) + np.arange(int(lengths.sum()))


# --------------------------------------------------------------------------- top-K


def _true_positives_at_k(y: np.ndarray, s: np.ndarray, k: int) -> int:
    """Number of (i, c) among each image's top-K labels with y = +1, a few rows at a time."""
    n, n_labels = y.shape
    step = max(1, _BLOCK // n_labels)
    tp = 0
    for r0 in range(0, n, step):
        # Comparisons are exact in the input dtype, so no float64 copy is needed here.
        predicted = _top_k_mask(s[r0 : r0 + step], k)  # [n, L]
        tp += int(np.count_nonzero(predicted & (y[r0 : r0 + step] == 1)))
    return tp


def _top_k_mask(s: np.ndarray, k: int) -> np.ndarray:
    """bool [n, L]: each row's K highest scores; among ties the lower label index wins."""
    n_labels = s.shape[1]
    if k >= n_labels:
        return np.ones(s.shape, dtype=bool)
    kth = np.partition(s, n_labels - k, axis=1)[:, n_labels - k, None]  # [n, 1] K-th largest
    above = s > kth  # fewer than K per row
    tied = s == kth
    room = k - np.count_nonzero(above, axis=1, keepdims=True)  # [n, 1] places left for ties
    predicted = above | tied
    # Rows with more tied scores than places keep the lowest label indices (a stable sort).
    crowded = np.flatnonzero(np.count_nonzero(tied, axis=1) > room[:, 0])
    if crowded.size:
        first = np.cumsum(tied[crowded], axis=1) <= room[crowded]
        predicted[crowded] = above[crowded] | (tied[crowded] & first)
    return predicted


def _f1(precision: float, recall: float) -> float:
    """2PR / (P + R); NaN when P + R is 0 or R is NaN, as the peers' 0/0."""
    total = precision + recall
    if not total > 0:  # also catches NaN
        return float("nan")
    return 2.0 * precision * recall / total
