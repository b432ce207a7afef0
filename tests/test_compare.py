"""``mlzsl compare``: per-label AP of a run against the official per-class tables
(docs/design.md, "The protocol").

Protects: the reader of both CSV layouts (ours and the releases'), the published means it must
reproduce, name and position matching, the numbers against an independent oracle, the plot, and
one-line errors through ``main([...])``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlzsl.cli import main
from mlzsl.compare import compare_tables, read_per_label_table
from mlzsl.labels import LabelSet
from mlzsl.protocol import evaluate_default
from tests.conftest import SHARED_DATA

REFERENCE = SHARED_DATA / "reference_results"
NUS = SHARED_DATA / "nus_wide"
OFFICIAL = [f"{m}_nus_{s}_per_class.csv" for m in ("ml2p", "lesa") for s in ("zsl", "gzsl")]
N_ROWS = {"zsl": 81, "gzsl": 1006}

needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"official per-class CSVs not found at {REFERENCE}"
)
needs_nus = pytest.mark.skipif(
    not (NUS / "TagList1k.txt").is_file(), reason=f"NUS-WIDE tag lists not found at {NUS}"
)


def _compare(capsys: pytest.CaptureFixture[str], *args: str | Path) -> dict:
    """Run ``mlzsl compare ARGS --json`` and return its JSON object."""
    capsys.readouterr()
    assert main(["compare", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _raw_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a CSV, read with the csv module only (the oracle's reader)."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def _write_perturbed(src: Path, dst: Path, rows_to_change: list[int], delta: float) -> None:
    """Copy ``src`` to ``dst`` in the same layout, adding ``delta`` to the AP of some rows."""
    header, rows = _raw_rows(src)
    for i in rows_to_change:
        rows[i][-1] = repr(float(rows[i][-1]) + delta)
    with dst.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


# ----------------------------------------------------------------------------- official files


@needs_reference
@pytest.mark.parametrize("name", OFFICIAL)
def test_official_table_against_itself_is_all_equal(name: str, capsys) -> None:
    path = REFERENCE / name
    out = _compare(capsys, path, path)
    n = N_ROWS[name.split("_")[2]]
    assert out["n_common"] == out["equal"] == n
    assert out["higher"] == out["lower"] == 0
    assert out["mean_ap"]["difference"] == 0.0 and out["mean_abs_difference"] == 0.0
    assert out["run_higher"] == out["run_lower"] == []
    assert out["matched_by"] == ("name" if "_zsl_" in name else "position")


@needs_reference
def test_perturbed_copy_names_exactly_the_changed_labels(tmp_path: Path, capsys) -> None:
    original = REFERENCE / "ml2p_nus_zsl_per_class.csv"
    _, rows = _raw_rows(original)
    changed = [3, 40, 80]  # AP well below 0.95, so +0.05 stays a fraction
    names = {rows[i][1] for i in changed}
    perturbed = tmp_path / "perturbed.csv"
    _write_perturbed(original, perturbed, changed, 0.05)

    out = _compare(capsys, perturbed, original)
    assert {r["label"] for r in out["run_higher"]} == names
    assert [r["difference"] for r in out["run_higher"]] == pytest.approx([5.0] * 3, abs=1e-9)
    assert out["run_lower"] == []
    assert (out["higher"], out["lower"], out["equal"]) == (3, 0, 78)
    assert out["mean_ap"]["difference"] == pytest.approx(15 / 81, abs=1e-12)
    assert out["mean_abs_difference"] == pytest.approx(15 / 81, abs=1e-12)

    assert main(["compare", str(perturbed), str(original)]) == 0
    text = capsys.readouterr().out
    assert "run higher than reference: 3 labels" in text
    for name in names:
        assert any(line.split()[:1] == [name] and "+5.00" in line for line in text.splitlines())


@needs_reference
def test_unnamed_gzsl_rows_are_matched_by_position(tmp_path: Path, capsys) -> None:
    original = REFERENCE / "ml2p_nus_gzsl_per_class.csv"
    perturbed = tmp_path / "perturbed_gzsl.csv"
    _write_perturbed(original, perturbed, [3, 500, 1000], 0.05)
    out = _compare(capsys, perturbed, original)
    assert out["matched_by"] == "position"
    assert {r["label"] for r in out["run_higher"]} == {"#3", "#500", "#1000"}
    assert out["mean_ap"]["difference"] == pytest.approx(15 / 1006, abs=1e-12)


@needs_reference
def test_official_files_average_to_design_figures() -> None:
    zsl = read_per_label_table(REFERENCE / "ml2p_nus_zsl_per_class.csv")
    gzsl = read_per_label_table(REFERENCE / "ml2p_nus_gzsl_per_class.csv")
    assert len(zsl) == 81 and zsl.names is not None and zsl.names[0] == "airport"
    assert len(gzsl) == 1006 and gzsl.names is None and gzsl.overall == {}
    assert round(100 * zsl.ap.mean(), 2) == 29.11
    assert round(100 * zsl.overall["F1@3"], 2) == 32.98
    assert round(100 * zsl.overall["F1@5"], 2) == 32.41
    assert round(100 * gzsl.ap.mean(), 2) == 10.06


@needs_reference
@needs_nus
def test_gzsl_row_orders_of_the_releases() -> None:
    """A label's GZSL AP equals its ZSL AP (same column of scores), which locates the concepts.

    (ML)²P lists the 925 seen tags then the 81 concepts (nus_label_set's order); LESA lists the
    81 concepts first.
    """
    from mlzsl.datasets.vocab import nus_label_set

    label_set = nus_label_set(NUS / "TagList1k.txt", NUS / "Concepts81.txt")
    for method, concept_rows in (("ml2p", label_set.unseen_idx), ("lesa", np.arange(81))):
        zsl = read_per_label_table(REFERENCE / f"{method}_nus_zsl_per_class.csv")
        gzsl = read_per_label_table(REFERENCE / f"{method}_nus_gzsl_per_class.csv")
        assert len(gzsl) == len(label_set)
        assert list(zsl.names or ()) == label_set.unseen_names
        np.testing.assert_allclose(gzsl.ap[concept_rows], zsl.ap, atol=1e-5)


@needs_reference
def test_against_independent_oracle(capsys) -> None:
    run, ref = REFERENCE / "lesa_nus_zsl_per_class.csv", REFERENCE / "ml2p_nus_zsl_per_class.csv"

    def by_name(path: Path) -> dict[str, float]:
        with path.open(newline="") as f:
            return {row["classes"]: float(row["ap"]) for row in csv.DictReader(f)}

    a, b = by_name(run), by_name(ref)
    names = sorted(a)
    d = np.array([a[n] - b[n] for n in names]) * 100
    out = _compare(capsys, run, ref, "--top", "7")
    assert out["mean_ap"]["run"] == pytest.approx(100 * np.mean([a[n] for n in names]))
    assert out["mean_ap"]["reference"] == pytest.approx(100 * np.mean([b[n] for n in names]))
    assert out["mean_ap"]["difference"] == pytest.approx(d.mean())
    assert out["mean_abs_difference"] == pytest.approx(np.abs(d).mean())
    assert (out["higher"], out["lower"]) == (int((d > 0).sum()), int((d < 0).sum()))
    ranked = sorted(zip(d, names, strict=True))
    assert [r["label"] for r in out["run_lower"]] == [n for _, n in ranked[:7]]
    assert [r["label"] for r in out["run_higher"]] == [n for _, n in ranked[::-1][:7]]
    assert out["overall"]["F1@3"]["reference"] == pytest.approx(32.9789928273025)


# ----------------------------------------------------------------------------- our own layout


def _our_csvs(tmp_path: Path, label_set: LabelSet, seed: int = 0) -> tuple[Path, Path, float]:
    """Evaluate random scores over ``label_set``; (per_label_zsl.csv, per_label_gzsl.csv, mAP)."""
    rng = np.random.default_rng(seed)
    n = 40
    scores = rng.normal(size=(n, len(label_set)))  # [N, L]
    targets = rng.choice([1, -1, -1, 0], size=(n, len(label_set)))  # [N, L]
    result = evaluate_default(scores, targets, label_set)
    zsl_csv, gzsl_csv = result.write_per_label_csv(tmp_path / "per_label")
    return zsl_csv, gzsl_csv, result.zsl.mean_ap


@needs_reference
def test_our_per_label_csv_against_the_reference(tmp_path: Path, capsys) -> None:
    concepts = read_per_label_table(REFERENCE / "ml2p_nus_zsl_per_class.csv").names
    assert concepts is not None
    seen = ["seen one", "seen two", "seen three"]
    # upper case: names match regardless of case
    label_set = LabelSet.from_lists(seen, [c.upper() for c in concepts])
    zsl_csv, gzsl_csv, zsl_map = _our_csvs(tmp_path, label_set)

    out = _compare(capsys, zsl_csv, REFERENCE / "ml2p_nus_zsl_per_class.csv")
    assert out["matched_by"] == "name" and out["n_common"] == 81
    assert out["mean_ap"]["run"] == pytest.approx(100 * zsl_map)
    assert out["mean_ap"]["reference"] == pytest.approx(29.111107737790583)
    assert out["higher"] + out["lower"] + out["equal"] == 81
    assert out["overall"] == {}  # our CSV has no overall metric columns

    out = _compare(capsys, gzsl_csv, REFERENCE / "ml2p_nus_zsl_per_class.csv")
    assert out["n_common"] == 81 and out["only_in_run"] == seen
    assert main(["compare", str(gzsl_csv), str(REFERENCE / "ml2p_nus_zsl_per_class.csv")]) == 0
    assert "only in run: 3 labels, left out ('seen one', 'seen two', 'seen three')" in (
        capsys.readouterr().out
    )


@needs_reference
@needs_nus
def test_our_gzsl_csv_against_the_unnamed_reference(tmp_path: Path, capsys) -> None:
    from mlzsl.datasets.vocab import nus_label_set

    label_set = nus_label_set(NUS / "TagList1k.txt", NUS / "Concepts81.txt")
    _, gzsl_csv, _ = _our_csvs(tmp_path, label_set)
    reference = REFERENCE / "ml2p_nus_gzsl_per_class.csv"
    by_position = _compare(capsys, gzsl_csv, reference)
    assert by_position["matched_by"] == "position" and by_position["n_common"] == 1006

    vocabulary = tmp_path / "vocabulary.csv"
    label_set.to_csv(vocabulary)
    by_name = _compare(capsys, gzsl_csv, reference, "--labels", vocabulary)
    assert by_name["matched_by"] == "name" and by_name["n_common"] == 1006
    assert by_name["mean_ap"] == pytest.approx(by_position["mean_ap"])
    assert by_name["run_lower"] == by_position["run_lower"]  # named from the run either way


def test_names_match_ignoring_case_and_spacing(tmp_path: Path) -> None:
    run, ref = tmp_path / "run.csv", tmp_path / "ref.csv"
    run.write_text("label,ap,n_positive\n  Air   Port ,0.5,3\nsky,0.25,1\nonly run,0.1,1\n")
    ref.write_text(",classes,ap\n0,air port,0.4\n1,SKY,0.25\n2,only ref,0.3\n")
    c = compare_tables(read_per_label_table(run), read_per_label_table(ref))
    assert c.labels == ("Air   Port", "sky")
    assert c.only_in_run == ("only run",) and c.only_in_reference == ("only ref",)
    assert c.counts() == {"higher": 1, "lower": 0, "equal": 1}
    assert c.to_dict()["mean_ap"]["difference"] == pytest.approx(5.0)


# ----------------------------------------------------------------------------- plot


def test_plot_is_a_png(tmp_path: Path, capsys) -> None:
    run, ref = tmp_path / "run.csv", tmp_path / "ref.csv"
    rng = np.random.default_rng(1)
    for path in (run, ref):
        rows = "".join(f"label {i},{float(v)!r},1\n" for i, v in enumerate(rng.uniform(size=30)))
        path.write_text("label,ap,n_positive\n" + rows)
    png = tmp_path / "plots" / "compare.png"
    out = _compare(capsys, run, ref, "--plot", png)
    assert out["plot"] == str(png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 500


# ----------------------------------------------------------------------------- errors


BAD_INPUTS = {
    "missing": (None, "file not found"),
    "no_ap": ("label,score\na,0.5\n", "no AP column"),
    "non_numeric": ("label,ap\na,0.5\nb,high\n", "not a number"),
    "percent": ("label,ap\na,50.0\n", "not a fraction"),
    "duplicate": ("label,ap\nCat,0.5\ncat ,0.4\n", "duplicate label name"),
    "ragged": ("label,ap\na,0.5,7\n", "cells"),
    "empty": ("", "expected a header"),
    "no_common": ("label,ap\nzz,0.5\n", "no label name in common"),
    "row_count": ("ap\n0.5\n0.4\n0.3\n", "matched by position"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_run_file_is_one_line_error(case: str, tmp_path: Path, capsys) -> None:
    text, expected = BAD_INPUTS[case]
    ref = tmp_path / "reference.csv"
    ref.write_text("ap\n0.5\n0.4\n" if case == "row_count" else "label,ap\na,0.5\nb,0.4\n")
    bad = tmp_path / "bad_run.csv"
    if text is not None:
        bad.write_text(text)
    _assert_one_line_error(["compare", str(bad), str(ref)], [str(bad), expected], capsys)


def test_bad_labels_option_is_one_line_error(tmp_path: Path, capsys) -> None:
    named, unnamed = tmp_path / "named.csv", tmp_path / "unnamed.csv"
    named.write_text("label,ap\na,0.5\nb,0.4\n")
    unnamed.write_text(",F1_3,ap\n0,,0.5\n1,,0.4\n")
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    args = ["compare", str(named), str(unnamed), "--labels", str(labels)]
    _assert_one_line_error(args, [str(unnamed), "3 label names"], capsys)
    args = ["compare", str(named), str(named), "--labels", str(labels)]
    _assert_one_line_error(args, ["--labels", "both tables"], capsys)
    args = ["compare", str(named), str(unnamed), "--labels", str(tmp_path / "nope.txt")]
    _assert_one_line_error(args, ["nope.txt", "not found"], capsys)


def _assert_one_line_error(args: list[str], expected: list[str], capsys) -> None:
    """``main(args)`` returns 2 with one stderr line holding every string of ``expected``."""
    capsys.readouterr()
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlzsl compare: error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    for piece in expected:
        assert piece in lines[0]
