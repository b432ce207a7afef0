"""Tests of mlzsl.protocol: ZSL/GZSL assembly checked against mlzsl.metrics directly, the
dictionary and table views, per-label CSV round trip, both Open Images conventions, and the
convention-aware `evaluate` (`mlzsl.evaluate`)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

import mlzsl
from mlzsl.errors import ConfigError, DataError, LabelError
from mlzsl.labels import LabelSet
from mlzsl.metrics import (
    average_precision_per_label,
    mean_average_precision,
    open_images_map,
    precision_recall_f1_at_k,
)
from mlzsl.protocol import (
    K_VALUES,
    EvalResult,
    Results,
    evaluate,
    evaluate_default,
    evaluate_open_images,
)

# Five labels with the unseen ones *not* at the end, so column selection is really tested.
LABELS = LabelSet(("cat", "sky", "dog", "sea", "car"), (True, False, True, False, True))
UNSEEN = [1, 3]


def tiny_case(seed: int = 0, n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """(scores [n, 5], targets [n, 5]) with masks and a label without positives (car)."""
    rng = np.random.default_rng(seed)
    targets = rng.choice(np.array([-1, 0, 1], dtype=np.int8), (n, 5), p=[0.5, 0.2, 0.3])
    targets[:, 4] = np.minimum(targets[:, 4], 0)
    return rng.random((n, 5)), targets


def test_k_values() -> None:
    assert K_VALUES == {"nus_wide": (3, 5), "open_images": (10, 20)}


def test_evaluate_default_matches_metrics() -> None:
    scores, targets = tiny_case()
    result = evaluate_default(scores, targets, LABELS, ks=(3, 1))
    assert result.ks == (1, 3) and result.convention is None
    zs, zt = scores[:, UNSEEN], targets[:, UNSEEN]
    assert result.zsl.label_names == ("sky", "sea")
    np.testing.assert_array_equal(result.zsl.ap, average_precision_per_label(zt, zs))
    assert result.zsl.mean_ap == pytest.approx(mean_average_precision(zt, zs))
    assert result.gzsl.label_names == LABELS.names
    assert result.gzsl.mean_ap == pytest.approx(mean_average_precision(targets, scores))
    assert result.gzsl.ap[4] == 0.0  # car has no positive: 0, inside the mean
    for k in (1, 3):
        assert result.zsl.at_k[k] == precision_recall_f1_at_k(zt, zs, k)
        assert result.gzsl.at_k[k] == precision_recall_f1_at_k(targets, scores, k)
    np.testing.assert_array_equal(result.gzsl.n_positive, (targets == 1).sum(axis=0))
    assert result.zsl.n_images == result.gzsl.n_images == 30
    assert result.zsl.weighted_map is None


def test_to_dict_keys_and_percent() -> None:
    scores, targets = tiny_case()
    result = evaluate_default(scores, targets, LABELS)
    fractions, percent = result.to_dict(percent=False), result.to_dict()
    assert list(percent) == ["zsl", "gzsl"]
    assert list(percent["zsl"]) == ["mAP", "P@3", "R@3", "F1@3", "P@5", "R@5", "F1@5"]
    assert fractions["zsl"]["mAP"] == result.zsl.mean_ap
    assert fractions["gzsl"]["F1@5"] == result.gzsl.at_k[5][2]
    for split in ("zsl", "gzsl"):
        for key, value in fractions[split].items():
            assert percent[split][key] == pytest.approx(100 * value)


def test_table_lists_both_splits() -> None:
    scores, targets = tiny_case()
    result = evaluate_default(scores, targets, LABELS)
    table = result.table()
    lines = table.splitlines()
    assert lines[1].split() == ["split", "images", "labels", "mAP", "P@3", "R@3", "F1@3"] + [
        "P@5",
        "R@5",
        "F1@5",
    ]
    assert lines[2].split()[:3] == ["zsl", "30", "2"]
    assert lines[3].split()[:3] == ["gzsl", "30", "5"]
    assert f"{100 * result.gzsl.mean_ap:.2f}" in lines[3]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_per_label_csv_round_trip(tmp_path: Path) -> None:
    scores, targets = tiny_case()
    result = evaluate_default(scores, targets, LABELS)
    paths = result.write_per_label_csv(tmp_path / "out")
    assert [p.name for p in paths] == ["per_label_zsl.csv", "per_label_gzsl.csv"]
    for path, split in zip(paths, (result.zsl, result.gzsl), strict=True):
        rows = read_csv(path)
        assert list(rows[0]) == ["label", "ap", "n_positive"]
        assert [r["label"] for r in rows] == list(split.label_names)
        np.testing.assert_array_equal([float(r["ap"]) for r in rows], split.ap)  # exact
        assert [int(r["n_positive"]) for r in rows] == split.n_positive.tolist()


def test_nan_survives_to_dict_and_table() -> None:
    # No unseen positive at all: ZSL recall and F1 are NaN, mAP is 0.
    scores, targets = tiny_case()
    targets[:, UNSEEN] = -1
    result = evaluate_default(scores, targets, LABELS, ks=(1,))
    assert result.zsl.mean_ap == 0.0
    assert math.isnan(result.to_dict()["zsl"]["R@1"]) and math.isnan(result.zsl.at_k[1][2])
    assert "nan" in result.table()


@pytest.mark.parametrize(
    ("scores", "targets", "error", "match"),
    [
        (np.zeros((4, 4)), np.zeros((4, 4)), DataError, r"\[N, 5\]"),
        (np.zeros(5), np.zeros(5), DataError, r"\[N, 5\]"),
        (np.zeros((4, 5)), np.zeros((3, 5)), DataError, "shape of scores"),
        (np.zeros((4, 5)), np.full((4, 5), 3), DataError, r"\+1, -1 or 0"),
    ],
)
def test_bad_inputs(scores: np.ndarray, targets: np.ndarray, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        evaluate_default(scores, targets, LABELS)


def test_no_unseen_label_and_bad_ks() -> None:
    all_seen = LabelSet.from_lists(["a", "b"], [])
    with pytest.raises(LabelError, match="no unseen"):
        evaluate_default(np.zeros((2, 2)), np.zeros((2, 2)), all_seen)
    scores, targets = tiny_case()
    for ks in [(), (0,), (2, -1), 3]:
        with pytest.raises(ConfigError):
            evaluate_default(scores, targets, LABELS, ks=ks)  # type: ignore[arg-type]


def sparse_case(seed: int = 0, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Open-Images-like: most entries unannotated, some images without any positive."""
    rng = np.random.default_rng(seed)
    targets = rng.choice(np.array([-1, 0, 1], dtype=np.int8), (n, 5), p=[0.2, 0.7, 0.1])
    targets[:, 3] = np.where(targets[:, 3] == 1, 0, targets[:, 3])
    return rng.random((n, 5)), targets


def test_evaluate_open_images_lesa_is_default_plus_weighted_map() -> None:
    scores, targets = sparse_case()
    results = evaluate_open_images(scores, targets, LABELS, ks=(1, 2))
    assert list(results) == ["lesa", "biam"]
    lesa, plain = results["lesa"], evaluate_default(scores, targets, LABELS, ks=(1, 2))
    assert lesa.convention == "lesa"
    for split in ("zsl", "gzsl"):
        assert getattr(lesa, split).mean_ap == pytest.approx(getattr(plain, split).mean_ap)
        assert getattr(lesa, split).at_k == getattr(plain, split).at_k
    zs, zt = scores[:, UNSEEN], targets[:, UNSEEN]
    assert (lesa.zsl.mean_ap, lesa.zsl.weighted_map) == pytest.approx(
        open_images_map(zt, zs, "lesa")
    )
    assert "wmAP" in lesa.to_dict()["gzsl"]


def test_evaluate_open_images_biam_follows_biams_blocks() -> None:
    scores, targets = sparse_case()
    biam = evaluate_open_images(scores, targets, LABELS, ks=(1, 2))["biam"]
    zs, zt = scores[:, UNSEEN], targets[:, UNSEEN]
    # ZSL: unseen labels all kept, images with an unseen positive only (AP and P/R/F1 alike).
    assert (biam.zsl.mean_ap, biam.zsl.weighted_map) == pytest.approx(
        open_images_map(zt, zs, "biam")
    )
    keep = (zt == 1).any(axis=1)
    assert biam.zsl.n_images == int(keep.sum()) < len(zt)
    assert biam.zsl.at_k[2] == precision_recall_f1_at_k(zt[keep], zs[keep], 2)
    # GZSL: labels annotated on no kept image dropped for AP, P/R/F1 over all labels.
    gzsl_map = open_images_map(targets, scores, "biam", drop_unannotated_labels=True)
    assert (biam.gzsl.mean_ap, biam.gzsl.weighted_map) == pytest.approx(gzsl_map)
    keep = (targets == 1).any(axis=1)
    assert biam.gzsl.at_k[1] == precision_recall_f1_at_k(targets[keep], scores[keep], 1)


def test_open_images_biam_drops_labels_and_names_follow(tmp_path: Path) -> None:
    scores, targets = sparse_case()
    targets[:, 4] = 0  # car annotated nowhere: dropped from BiAM's GZSL mAP
    biam = evaluate_open_images(scores, targets, LABELS)["biam"]
    assert biam.gzsl.label_names == ("cat", "sky", "dog", "sea")
    assert len(biam.gzsl.ap) == 4
    paths = biam.write_per_label_csv(tmp_path)
    assert [p.name for p in paths] == ["per_label_biam_zsl.csv", "per_label_biam_gzsl.csv"]
    assert [r["label"] for r in read_csv(paths[1])] == ["cat", "sky", "dog", "sea"]
    assert "convention 'biam'" in biam.table()


def test_open_images_biam_without_unseen_positive_gives_nan() -> None:
    scores, targets = sparse_case()
    targets[:, UNSEEN] = np.minimum(targets[:, UNSEEN], 0)
    zsl = evaluate_open_images(scores, targets, LABELS, ks=(1,))["biam"].zsl
    assert zsl.n_images == 0 and zsl.mean_ap == 0.0
    assert zsl.weighted_map is not None and math.isnan(zsl.weighted_map)
    assert all(math.isnan(v) for v in zsl.at_k[1])


def test_eval_result_is_a_plain_dataclass() -> None:
    scores, targets = tiny_case()
    result = evaluate_default(scores, targets, LABELS)
    assert isinstance(result, EvalResult)
    with pytest.raises(AttributeError):
        result.convention = "x"  # type: ignore[misc]


def test_package_evaluate_is_the_convention_aware_one() -> None:
    assert mlzsl.evaluate is evaluate


def test_evaluate_on_open_images_applies_both_conventions() -> None:
    scores, targets = sparse_case()
    results = mlzsl.evaluate(scores, targets, LABELS, evaluation="open_images")
    assert isinstance(results, Results)
    assert list(results.by_convention) == ["lesa", "biam"]
    assert results.primary_convention == "biam" and results.ks == K_VALUES["open_images"]
    oracle = evaluate_open_images(scores, targets, LABELS)
    assert results.to_dict() == {
        **{k: r.to_dict() for k, r in oracle.items()},
        "selected_by": "biam",
    }


def test_evaluate_by_default_is_the_default_convention() -> None:
    scores, targets = tiny_case()
    results = evaluate(scores, targets, LABELS)
    assert list(results.by_convention) == ["default"] and results.ks == K_VALUES["nus_wide"]
    assert results.primary.convention is None
    assert results.to_dict() == evaluate_default(scores, targets, LABELS).to_dict()
    assert evaluate(scores, targets, LABELS, ks=(1,)).ks == (1,)


def test_evaluate_refuses_an_unknown_evaluation_kind() -> None:
    scores, targets = tiny_case()
    with pytest.raises(ConfigError, match="evaluation must be one of default, open_images"):
        evaluate(scores, targets, LABELS, evaluation="scenes")  # type: ignore[arg-type]
