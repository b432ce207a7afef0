"""Tests of mlzsl.metrics: scikit-learn as the AP oracle, hand-computed cases for every rule,
invariance properties, and BiAM's Open Images convention against a literal re-derivation."""

from __future__ import annotations

import math
from random import Random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import average_precision_score

from mlzsl.errors import ConfigError, DataError, MlzslError
from mlzsl.metrics import (
    average_precision_per_label,
    mean_average_precision,
    open_images_ap_per_label,
    open_images_map,
    precision_recall_f1_at_k,
)

# --------------------------------------------------------------------------- oracles


def sklearn_ap_per_label(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The spec, literally: sklearn AP over the annotated rows of each label, 0 without positive."""
    out = np.zeros(y.shape[1])
    for c in range(y.shape[1]):
        rows = y[:, c] != 0
        if np.any(y[rows, c] == 1):
            out[c] = average_precision_score(y[rows, c] == 1, s[rows, c])
    return out


def naive_prf_at_k(y: np.ndarray, s: np.ndarray, k: int) -> tuple[float, float, float]:
    """Top-K per image by a stable sort on -score (lower index first among ties)."""
    tp = 0
    for i in range(y.shape[0]):
        top = np.argsort(-s[i], kind="stable")[:k]
        tp += int(np.sum(y[i, top] == 1))
    p = tp / (y.shape[0] * min(k, y.shape[1]))
    n_true = int(np.sum(y == 1))
    r = tp / n_true if n_true else math.nan
    f1 = 2 * p * r / (p + r) if p + r > 0 else math.nan
    return p, r, f1


def naive_biam(y: np.ndarray, s: np.ndarray, drop: bool) -> tuple[np.ndarray, np.ndarray]:
    """BiAM's Open Images AP as described in the module docstring (valid without ties):
    keep images with a positive; optionally drop labels annotated nowhere; for label c pool all
    annotated entries of the rows annotated for c, sort by score, mean precision at positives."""
    keep = (y == 1).any(axis=1)
    y, s = y[keep], s[keep]
    labels = np.flatnonzero((y != 0).any(axis=0)) if drop else np.arange(y.shape[1])
    y, s = y[:, labels], s[:, labels]
    ap = np.zeros(len(labels))
    for c in range(len(labels)):
        rows = y[:, c] != 0
        pool_y, pool_s = y[rows][y[rows] != 0], s[rows][y[rows] != 0]
        if not np.any(pool_y == 1):
            continue
        hits = pool_y[np.argsort(-pool_s, kind="stable")] == 1
        precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
        ap[c] = precision[hits].mean()
    return labels, ap


# --------------------------------------------------------------------------- strategies


@st.composite
def problems(draw: st.DrawFn, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    """(y [N, L] in {-1, 0, 1}, s [N, L]); scores from 4 values when ``ties``, else distinct."""
    n = draw(st.integers(1, 12))
    n_labels = draw(st.integers(1, 6))
    y = draw(hnp.arrays(np.int8, (n, n_labels), elements=st.sampled_from([-1, 0, 1])))
    if ties:
        s = draw(hnp.arrays(np.float64, (n, n_labels), elements=st.sampled_from([0.0, 0.5, 1, 2])))
    else:
        values = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)
        s = draw(hnp.arrays(np.float64, (n, n_labels), elements=values, unique=True))
    return y, s


# --------------------------------------------------------------------------- AP vs sklearn


@pytest.mark.parametrize("seed", range(20))
def test_ap_matches_sklearn_on_random_masked_tied_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, n_labels = rng.integers(1, 200), rng.integers(1, 12)
    y = rng.choice(np.array([-1, 0, 1], dtype=np.int8), (n, n_labels), p=[0.5, 0.3, 0.2])
    y[:, 0] = np.where(y[:, 0] == 1, -1, y[:, 0])  # one label with no positive -> 0
    s = np.round(rng.random((n, n_labels)) * rng.integers(1, 8)) / 4  # heavy ties
    ap = average_precision_per_label(y, s)
    np.testing.assert_allclose(ap, sklearn_ap_per_label(y, s), rtol=1e-12, atol=1e-12)
    assert ap[0] == 0.0
    assert mean_average_precision(y, s) == pytest.approx(ap.mean(), rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(problems(ties=True))
def test_ap_matches_sklearn_property(problem: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = problem
    np.testing.assert_allclose(
        average_precision_per_label(y, s), sklearn_ap_per_label(y, s), rtol=1e-12, atol=1e-12
    )


def test_ap_accepts_float32_scores_and_float_labels() -> None:
    rng = np.random.default_rng(0)
    y = rng.choice([-1.0, 0.0, 1.0], (50, 4))
    s = rng.random((50, 4)).astype(np.float32)
    np.testing.assert_allclose(
        average_precision_per_label(y, s), sklearn_ap_per_label(y, s.astype(np.float64))
    )


def test_ap_over_several_column_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocking over columns (for memory) must not change anything."""
    import mlzsl.metrics as metrics

    rng = np.random.default_rng(1)
    y = rng.choice(np.array([-1, 0, 1], dtype=np.int8), (40, 13))
    s = rng.random((40, 13))
    monkeypatch.setattr(metrics, "_BLOCK", 40 * 3)  # 3 columns per block
    np.testing.assert_allclose(average_precision_per_label(y, s), sklearn_ap_per_label(y, s))


# --------------------------------------------------------------------------- AP by hand


def test_ap_masks_unannotated_rows() -> None:
    # Row 1 (score .95) is not annotated and must be ignored. Remaining ranking:
    # .9 (+), .8 (-), .7 (+) -> precision at the positives 1/1 and 2/3 -> AP = (1 + 2/3) / 2.
    y = np.array([[1], [0], [-1], [1]])
    s = np.array([[0.9], [0.95], [0.8], [0.7]])
    assert average_precision_per_label(y, s)[0] == pytest.approx(5 / 6)


def test_ap_is_zero_without_positive_and_stays_in_the_mean() -> None:
    # Label 0: one positive ranked first -> AP 1. Label 1: only -1 and 0 -> AP 0, kept.
    y = np.array([[1, -1], [-1, 0], [0, -1]])
    s = np.array([[0.9, 0.1], [0.1, 0.2], [0.3, 0.3]])
    np.testing.assert_array_equal(average_precision_per_label(y, s), [1.0, 0.0])
    assert mean_average_precision(y, s) == pytest.approx(0.5)


def test_ap_groups_tied_scores() -> None:
    # Three tied scores, two positives: one threshold, precision 2/3 at recall 1 -> AP 2/3.
    # No order of the ties gives 2/3: ++- gives 1, +-+ gives 5/6, -++ gives 7/12.
    y = np.array([[1], [1], [-1]])
    s = np.array([[0.5], [0.5], [0.5]])
    assert average_precision_per_label(y, s)[0] == pytest.approx(2 / 3)
    for order in ([2, 0, 1], [0, 2, 1], [1, 2, 0]):
        assert average_precision_per_label(y[order], s[order])[0] == pytest.approx(2 / 3)


def test_ap_only_positives_is_one() -> None:
    assert average_precision_per_label(np.array([[1], [1]]), np.array([[0.0], [1.0]]))[0] == 1.0


# --------------------------------------------------------------------------- P/R/F1 by hand


def test_prf_counts_every_image_in_precision() -> None:
    # Image 0: top-2 = labels 0, 1 -> hits 1 (label 0). Image 1 has no positive: 0 hits.
    # TP = 1, P = 1 / (2 images * 2), R = 1 / 2 positives, F1 = 2PR / (P + R) = 1/3.
    y = np.array([[1, -1, 1], [-1, -1, -1]])
    s = np.array([[0.9, 0.8, 0.1], [0.3, 0.2, 0.1]])
    p, r, f1 = precision_recall_f1_at_k(y, s, 2)
    assert (p, r) == (0.25, 0.5)
    assert f1 == pytest.approx(1 / 3)


def test_prf_k_larger_than_labels_predicts_all_and_divides_by_n_times_l() -> None:
    # K = 5 > L = 3: all 3 labels predicted per image; TP = 3 positives; P = 3 / (2 * 3).
    y = np.array([[1, -1, 1], [0, 1, -1]])
    s = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    assert precision_recall_f1_at_k(y, s, 5) == pytest.approx((0.5, 1.0, 2 / 3))
    assert precision_recall_f1_at_k(y, s, 5) == precision_recall_f1_at_k(y, s, 3)


def test_prf_no_positive_at_all_gives_nan_recall_and_f1() -> None:
    y = np.array([[-1, 0], [-1, -1]])
    p, r, f1 = precision_recall_f1_at_k(y, np.array([[1.0, 0.0], [0.0, 1.0]]), 1)
    assert p == 0.0 and math.isnan(r) and math.isnan(f1)


def test_prf_zero_hits_gives_nan_f1() -> None:
    # A positive exists but is never in the top-1: P = R = 0 and F1 = 0/0 = NaN (peers' rule).
    y = np.array([[-1, 1]])
    p, r, f1 = precision_recall_f1_at_k(y, np.array([[1.0, 0.0]]), 1)
    assert (p, r) == (0.0, 0.0) and math.isnan(f1)


def test_prf_ties_at_kth_place_go_to_lower_label_index() -> None:
    # Scores 1, 1, 1, 0 and K = 2: labels 0 and 1 are predicted, label 2 is not.
    s = np.array([[1.0, 1.0, 1.0, 0.0]])
    assert precision_recall_f1_at_k(np.array([[-1, 1, -1, -1]]), s, 2)[0] == 0.5
    assert precision_recall_f1_at_k(np.array([[-1, -1, 1, -1]]), s, 2)[0] == 0.0
    # A higher score above the tie takes one place first: label 3 then label 0.
    s = np.array([[1.0, 1.0, 1.0, 2.0]])
    assert precision_recall_f1_at_k(np.array([[1, -1, -1, -1]]), s, 2)[0] == 0.5
    assert precision_recall_f1_at_k(np.array([[-1, 1, -1, -1]]), s, 2)[0] == 0.0


def test_prf_unannotated_prediction_is_not_a_hit() -> None:
    # Top-1 is label 0, not annotated: no hit, but it still counts in P's denominator.
    assert precision_recall_f1_at_k(np.array([[0, 1]]), np.array([[2.0, 1.0]]), 1)[:2] == (0, 0)


@settings(max_examples=200, deadline=None)
@given(problems(ties=True), st.integers(1, 8))
def test_prf_matches_stable_sort_oracle(problem: tuple[np.ndarray, np.ndarray], k: int) -> None:
    y, s = problem
    np.testing.assert_allclose(precision_recall_f1_at_k(y, s, k), naive_prf_at_k(y, s, k))


def test_prf_over_several_row_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlzsl.metrics as metrics

    rng = np.random.default_rng(2)
    y = rng.choice(np.array([-1, 0, 1], dtype=np.int8), (37, 9))
    s = np.round(rng.random((37, 9)) * 3)
    monkeypatch.setattr(metrics, "_BLOCK", 9 * 4)  # 4 rows per block
    np.testing.assert_allclose(precision_recall_f1_at_k(y, s, 3), naive_prf_at_k(y, s, 3))


# --------------------------------------------------------------------------- invariances


@settings(max_examples=100, deadline=None)
@given(problems(ties=True), st.integers(1, 8), st.randoms(use_true_random=False))
def test_permuting_images_changes_nothing(
    problem: tuple[np.ndarray, np.ndarray], k: int, random: Random
) -> None:
    y, s = problem
    order = list(range(y.shape[0]))
    random.shuffle(order)
    np.testing.assert_allclose(
        average_precision_per_label(y[order], s[order]), average_precision_per_label(y, s)
    )
    np.testing.assert_allclose(
        precision_recall_f1_at_k(y[order], s[order], k), precision_recall_f1_at_k(y, s, k)
    )


@settings(max_examples=100, deadline=None)
@given(problems(ties=False), st.integers(1, 8), st.randoms(use_true_random=False))
def test_permuting_labels_permutes_ap_and_keeps_the_rest(
    problem: tuple[np.ndarray, np.ndarray], k: int, random: Random
) -> None:
    # Distinct scores: with ties at the K-th place the lower-index rule would make P@K depend on
    # the label order (by design), so that case is tested separately above.
    y, s = problem
    perm = list(range(y.shape[1]))
    random.shuffle(perm)
    ap = average_precision_per_label(y, s)
    np.testing.assert_allclose(average_precision_per_label(y[:, perm], s[:, perm]), ap[perm])
    assert mean_average_precision(y[:, perm], s[:, perm]) == pytest.approx(ap.mean())
    np.testing.assert_allclose(
        precision_recall_f1_at_k(y[:, perm], s[:, perm], k), precision_recall_f1_at_k(y, s, k)
    )


# --------------------------------------------------------------------------- Open Images

# Columns A, B, C, D; scores in brackets.
#   image 0: A +1 (.9)  B -1 (.8)  C  0 (.1)  D  0 (.4)
#   image 1: A -1 (.7)  B +1 (.6)  C -1 (.5)  D  0 (.35)
#   image 2: A  0 (.3)  B  0 (.2)  C -1 (.95) D -1 (.05)   no positive
#   image 3: nothing annotated
OI_Y = np.array([[1, -1, 0, 0], [-1, 1, -1, 0], [0, 0, -1, -1], [0, 0, 0, 0]])
OI_S = np.array(
    [[0.9, 0.8, 0.1, 0.4], [0.7, 0.6, 0.5, 0.35], [0.3, 0.2, 0.95, 0.05], [0.5, 0.5, 0.5, 0.5]]
)


def test_open_images_lesa_by_hand() -> None:
    # Per column over its annotated images, all images kept:
    #   A: .9 (+), .7 (-)             -> AP 1
    #   B: .8 (-), .6 (+)             -> AP 1/2
    #   C: .95 (-), .5 (-), no +      -> AP 0 (kept)
    #   D: .05 (-), no +              -> AP 0 (kept)
    # mAP = 1.5 / 4; positives A 1, B 1, C 0, D 0 -> weighted (1 + 1/2) / 2 = 3/4.
    labels, ap, n_pos = open_images_ap_per_label(OI_Y, OI_S, "lesa")
    np.testing.assert_array_equal(labels, [0, 1, 2, 3])
    np.testing.assert_allclose(ap, [1, 0.5, 0, 0])
    np.testing.assert_array_equal(n_pos, [1, 1, 0, 0])
    assert open_images_map(OI_Y, OI_S, "lesa") == pytest.approx((0.375, 0.75))
    np.testing.assert_allclose(ap, average_precision_per_label(OI_Y, OI_S))


def test_open_images_biam_by_hand() -> None:
    # Images 2 and 3 have no positive: BiAM drops them; images 0 and 1 remain.
    # A: rows annotated for A = {0, 1}; pool = every annotated entry of rows 0 and 1:
    #    .9 (+), .8 (-), .7 (-), .6 (+), .5 (-) -> precision at positives 1/1, 2/4 -> AP 3/4.
    # B: rows annotated for B = {0, 1} -> same pool -> AP 3/4.
    # C: rows annotated for C among kept = {1}; pool .7 (-), .6 (+), .5 (-) -> AP 1/2,
    #    although C itself has no positive (the pooling quirk).
    # D: no kept row annotated for D -> empty pool -> AP 0.
    # Positives among kept rows: A 1, B 1, C 0, D 0.
    # Keeping D (BiAM's ZSL block): mAP = (3/4 + 3/4 + 1/2 + 0) / 4 = 1/2, weighted 3/4.
    labels, ap, n_pos = open_images_ap_per_label(OI_Y, OI_S, "biam")
    np.testing.assert_array_equal(labels, [0, 1, 2, 3])
    np.testing.assert_allclose(ap, [0.75, 0.75, 0.5, 0.0])
    np.testing.assert_array_equal(n_pos, [1, 1, 0, 0])
    assert open_images_map(OI_Y, OI_S, "biam") == pytest.approx((0.5, 0.75))
    # Dropping labels annotated on no kept image (BiAM's seen/GZSL blocks): D goes,
    # mAP = (3/4 + 3/4 + 1/2) / 3 = 2/3, weighted still 3/4.
    labels, ap, _ = open_images_ap_per_label(OI_Y, OI_S, "biam", drop_unannotated_labels=True)
    np.testing.assert_array_equal(labels, [0, 1, 2])
    np.testing.assert_allclose(ap, [0.75, 0.75, 0.5])
    result = open_images_map(OI_Y, OI_S, "biam", drop_unannotated_labels=True)
    assert result == pytest.approx((2 / 3, 0.75))


def test_open_images_biam_groups_ties_in_the_pool() -> None:
    # One image, pool of three tied entries (+, +, -): one step, precision 2/3 -> AP 2/3 for
    # every label; the weights are A 1, B 1, C 0.
    y = np.array([[1, 1, -1]])
    s = np.array([[0.5, 0.5, 0.5]])
    np.testing.assert_allclose(open_images_ap_per_label(y, s, "biam").ap, [2 / 3] * 3)


def test_open_images_nan_when_nothing_to_average() -> None:
    y = np.array([[-1, 0], [0, -1]])  # no positive: BiAM keeps no image
    s = np.zeros((2, 2))
    mean, weighted = open_images_map(y, s, "biam", drop_unannotated_labels=True)
    assert math.isnan(mean) and math.isnan(weighted)
    mean, weighted = open_images_map(y, s, "biam")
    assert mean == 0.0 and math.isnan(weighted)
    mean, weighted = open_images_map(y, s, "lesa")
    assert mean == 0.0 and math.isnan(weighted)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("drop", [False, True])
def test_open_images_biam_matches_literal_derivation(seed: int, drop: bool) -> None:
    rng = np.random.default_rng(seed)
    n, n_labels = rng.integers(1, 40), rng.integers(1, 10)
    y = rng.choice(np.array([-1, 0, 1], dtype=np.int8), (n, n_labels), p=[0.3, 0.55, 0.15])
    s = rng.random((n, n_labels))  # continuous: no ties, where BiAM's sort order is moot
    labels, ap, n_pos = open_images_ap_per_label(y, s, "biam", drop_unannotated_labels=drop)
    expected_labels, expected_ap = naive_biam(y, s, drop)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(ap, expected_ap, rtol=1e-12)
    kept = (y == 1).any(axis=1)
    np.testing.assert_array_equal(n_pos, (y[kept][:, labels] == 1).sum(axis=0))


@settings(max_examples=100, deadline=None)
@given(problems(ties=True), st.randoms(use_true_random=False))
def test_open_images_biam_is_order_independent(
    problem: tuple[np.ndarray, np.ndarray], random: Random
) -> None:
    y, s = problem
    rows, cols = list(range(y.shape[0])), list(range(y.shape[1]))
    random.shuffle(rows)
    random.shuffle(cols)
    base = open_images_ap_per_label(y, s, "biam")
    moved = open_images_ap_per_label(y[rows][:, cols], s[rows][:, cols], "biam")
    np.testing.assert_allclose(moved.ap, base.ap[cols])


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        (np.zeros((2, 3)), np.zeros((3, 2)), "same shape"),
        (np.zeros(3), np.zeros(3), "2-D"),
        (np.zeros((0, 3)), np.zeros((0, 3)), "at least one image"),
        (np.array([[2, 0]]), np.zeros((1, 2)), r"\+1, -1 or 0"),
        (np.array([[0.5, 0]]), np.zeros((1, 2)), r"\+1, -1 or 0"),
        (np.array([[True, False]]), np.zeros((1, 2)), "dtype bool"),
        (np.array([[1, 0]]), np.array([[np.nan, 0]]), "finite"),
        (np.array([[1, 0]]), np.array([[np.inf, 0]]), "finite"),
        (np.array([[1, 0]]), np.array([["a", "b"]]), "real numbers"),
    ],
)
def test_bad_inputs_raise_data_error(y: np.ndarray, s: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        average_precision_per_label(y, s)
    with pytest.raises(DataError, match=match):
        precision_recall_f1_at_k(y, s, 1)
    with pytest.raises(DataError, match=match):
        open_images_map(y, s, "biam")


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "3"])
def test_bad_k_raises_config_error(k: object) -> None:
    with pytest.raises(ConfigError, match="k must be an integer"):
        precision_recall_f1_at_k(np.array([[1]]), np.array([[0.0]]), k)  # type: ignore[arg-type]


def test_bad_convention_raises_config_error() -> None:
    y, s = np.array([[1]]), np.array([[0.0]])
    with pytest.raises(ConfigError, match="convention"):
        open_images_map(y, s, "coco")
    with pytest.raises(ConfigError, match="biam"):
        open_images_map(y, s, "lesa", drop_unannotated_labels=True)
    assert issubclass(ConfigError, MlzslError) and issubclass(DataError, MlzslError)
