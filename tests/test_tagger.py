"""``mlzsl.inference.tagger``: label parsing, a checkpoint's tagger, its scores and errors, the demo
link."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mlzsl.backbones import create_backbone
from mlzsl.config import load_config
from mlzsl.embeddings import create_embedder, embed_labels
from mlzsl.errors import ConfigError, DataError, LabelError
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.inference.tagger import Tagger, latest_demo_checkpoint, remember_demo_checkpoint
from mlzsl.inference.tags import Tag, parse_labels
from mlzsl.store.feature_store import FeatureStore
from mlzsl.training.engine import fit

LABELS = ["red circle", "blue square", "green star", "red square", "blue star", "green circle"]


# ----------------------------------------------------------------------------- parse_labels


@pytest.mark.parametrize(
    "text, expected",
    [
        ("red circle, blue star", ["red circle", "blue star"]),
        ("  red circle ,blue star  ,", ["red circle", "blue star"]),  # spaces, trailing comma
        ("a, b, a, b , c", ["a", "b", "c"]),  # duplicates dropped, first place kept
        ("b, a", ["b", "a"]),  # order kept, not sorted
        ("Red, red", ["Red", "red"]),  # case is kept: not duplicates
        ("one", ["one"]),
        (",,x,,", ["x"]),
        (["red circle ", " blue star", "red circle"], ["red circle", "blue star"]),
        (("x", "", "  ", "y"), ["x", "y"]),  # any sequence; blank items dropped
        (["a, b"], ["a, b"]),  # list items are not split at commas
    ],
)
def test_parse_labels(text: str | list[str], expected: list[str]) -> None:
    assert parse_labels(text) == expected


@pytest.mark.parametrize("text", ["", "   ", ",", " , ,", [], ["", "  "]])
def test_parse_labels_refuses_an_empty_list(text: str | list[str]) -> None:
    with pytest.raises(LabelError, match="no labels given"):
        parse_labels(text)


# ----------------------------------------------------------------------------- a trained tagger


@pytest.fixture(scope="module")
def checkpoint(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fast0tag trained for one epoch on the session's tiny store (EfficientNet-Lite0, 64 px)."""
    out = tmp_path_factory.mktemp("tagger") / "run"
    torch.set_num_threads(1)
    config = load_config(None, ["model=fast0tag", "epochs=1", "batch_size=8"])
    fit(config, tiny_store, out, quiet=True)
    return out / "best.pt"


@pytest.fixture(scope="module")
def tagger(checkpoint: Path) -> Tagger:
    """The torch tagger (tests/test_default_runtime.py checks the default engine against it)."""
    tagger = Tagger.from_checkpoint(checkpoint, runtime="torch")
    assert isinstance(tagger, Tagger)
    return tagger


@pytest.fixture(scope="module")
def images(tiny_store: Path) -> list[Path]:
    """The first five images of the tiny store, in store order."""
    ids = FeatureStore(tiny_store).image_ids[:5]
    return [tiny_store.parent / "data" / i for i in ids]


def test_from_checkpoint_restores_what_the_checkpoint_names(
    tagger: Tagger, checkpoint: Path
) -> None:
    ckpt = load_checkpoint(checkpoint)
    assert tagger.image_size == 64 == ckpt.preprocess.image_size
    assert tagger.embedder.dim == 50 == ckpt.embed_dim
    assert tagger.backbone.identity()["name"] == ckpt.backbone["name"] == "efficientnet_lite0"
    assert tagger.preprocess == ckpt.preprocess
    assert not tagger.model.training and not tagger.backbone.training
    state = tagger.model.state_dict()
    assert state.keys() == ckpt.state_dict.keys()
    for key, value in ckpt.state_dict.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0)


def test_from_checkpoint_of_a_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        Tagger.from_checkpoint(tmp_path / "missing.pt")


def _by_hand(checkpoint: Path, images: list[Path], labels: list[str]) -> np.ndarray:
    """model(backbone(pixels), vectors), each piece built here from the checkpoint's names."""
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.build_model()
    size = ckpt.preprocess.image_size
    backbone = create_backbone(ckpt.backbone["name"], image_size=size).eval()
    mean, std = np.float32(ckpt.preprocess.mean), np.float32(ckpt.preprocess.std)
    pixels = []
    for path in images:
        rgb = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        pixels.append(((np.asarray(rgb, np.float32) / 255 - mean) / std).transpose(2, 0, 1))
    vectors = torch.from_numpy(embed_labels(labels, create_embedder(ckpt.embedder)))
    with torch.no_grad():
        return model(backbone(torch.from_numpy(np.stack(pixels))), vectors).numpy()


def test_scores_equal_model_of_backbone_computed_by_hand(
    tagger: Tagger, checkpoint: Path, images: list[Path], tiny_store: Path
) -> None:
    scores = tagger.scores(images, LABELS)
    assert scores.shape == (5, 6) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, _by_hand(checkpoint, images, LABELS), rtol=1e-5, atol=1e-6)
    # and the store's features (written by `mlzsl extract`) give the same scores
    model = load_checkpoint(checkpoint).build_model()
    vectors = torch.from_numpy(embed_labels(LABELS, tagger.embedder))
    with torch.no_grad():
        stored = model(torch.from_numpy(FeatureStore(tiny_store).features(np.arange(5))), vectors)
    np.testing.assert_allclose(scores, stored.numpy(), rtol=1e-3, atol=1e-3)
    # scores of one image do not depend on the other images of the batch nor on label order
    np.testing.assert_allclose(tagger.scores(images[2:3], LABELS), scores[2:3], atol=1e-5)
    np.testing.assert_allclose(tagger.scores(images, LABELS[::-1]), scores[:, ::-1], atol=1e-6)
    assert np.ptp(scores) > 0  # a trained model does not score every label alike


def test_tag_gives_top_k_best_first_with_the_scores(tagger: Tagger, images: list[Path]) -> None:
    scores = tagger.scores(images, LABELS)
    tags = tagger.tag(images, LABELS, top_k=3)
    assert len(tags) == len(images)
    for row, image_tags in zip(scores, tags, strict=True):
        assert len(image_tags) == 3 and all(isinstance(t, Tag) for t in image_tags)
        assert [t.label for t in image_tags] == [LABELS[j] for j in np.argsort(-row)[:3]]
        assert [t.score for t in image_tags] == pytest.approx(sorted(row, reverse=True)[:3])
        for t in image_tags:
            assert t.score == pytest.approx(float(row[LABELS.index(t.label)]))
    # a top_k past the number of labels gives every label, still best first
    everything = tagger.tag(images[:1], LABELS, top_k=50)[0]
    assert sorted(t.label for t in everything) == sorted(LABELS)
    assert [t.score for t in everything] == sorted((t.score for t in everything), reverse=True)
    # labels as one comma-separated string, duplicates dropped; default top_k is 5
    assert tagger.tag(images[:1], ", ".join(LABELS + LABELS[:2]))[0] == everything[:5]


@pytest.mark.parametrize("top_k", [0, -1])
def test_top_k_below_one_is_a_config_error(tagger: Tagger, images: list[Path], top_k: int) -> None:
    with pytest.raises(ConfigError, match=f"top_k must be at least 1, got {top_k}"):
        tagger.tag(images[:1], LABELS, top_k=top_k)


class _FixedScores(nn.Module):
    """A 'model' scoring every image with the same row of scores."""

    def __init__(self, row: list[float]) -> None:
        super().__init__()
        self.row = torch.tensor(row)

    def forward(self, features: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        assert vectors.shape[0] == len(self.row)
        return self.row.expand(features.shape[0], -1).clone()


def test_ties_keep_the_order_the_labels_were_given_in(tagger: Tagger, images: list[Path]) -> None:
    fixed = Tagger(
        model=_FixedScores([1.0, 2.0, 2.0, 1.0, 2.0, 0.5]),
        backbone=tagger.backbone,
        embedder_spec="glove50",
        preprocess=tagger.preprocess,
        embed_dim=50,
    )
    for image_tags in fixed.tag(images[:2], LABELS, top_k=6):
        assert [t.label for t in image_tags] == [LABELS[j] for j in (1, 2, 4, 0, 3, 5)]
        assert [t.score for t in image_tags] == [2.0, 2.0, 2.0, 1.0, 1.0, 0.5]
    # the cut at top_k takes the earlier of tied labels
    assert [t.label for t in fixed.tag(images[:1], LABELS, top_k=4)[0]] == [
        "blue square",
        "green star",
        "blue star",
        "red circle",
    ]


def test_a_non_image_file_is_a_data_error_naming_it(
    tagger: Tagger, images: list[Path], tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(images[0].read_bytes()[:60])
    for bad in (text, truncated):
        with pytest.raises(DataError, match="not a readable image") as error:
            tagger.tag([images[0], bad], LABELS)
        assert str(error.value).startswith(str(bad)) and "\n" not in str(error.value)
    missing = tmp_path / "missing.png"
    with pytest.raises(DataError, match="image not found") as error:
        tagger.tag([missing], LABELS)
    assert str(error.value).startswith(str(missing))


def test_a_label_the_embedder_cannot_embed_is_a_label_error(
    tagger: Tagger, images: list[Path]
) -> None:
    with pytest.raises(LabelError, match="qwxzzyq"):
        tagger.tag(images[:1], ["red circle", "qwxzzyq"])
    with pytest.raises(LabelError, match="no labels given"):
        tagger.tag(images[:1], " , ")


def test_embedder_of_another_dimension_is_a_config_error(
    tagger: Tagger, checkpoint: Path, tmp_path: Path
) -> None:
    vectors = tmp_path / "tiny_glove.txt"
    vectors.write_text("red 0.1 0.2 0.3\ncircle 0.3 0.2 0.1\n")
    spec = f"glove:{vectors}"
    assert create_embedder(spec).dim == 3
    with pytest.raises(ConfigError, match="expects 50-d label vectors") as error:
        Tagger.from_checkpoint(checkpoint, embedder=spec)
    message = str(error.value)
    assert message.startswith(str(checkpoint)) and "gives 3-d" in message
    with pytest.raises(ConfigError, match="expects 7-d label vectors"):
        Tagger(
            model=tagger.model,
            backbone=tagger.backbone,
            embedder_spec="glove50",
            preprocess=tagger.preprocess,
            embed_dim=7,
        )


# ----------------------------------------------------------------------------- the demo link


def test_latest_demo_checkpoint_without_a_demo_is_a_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLZSL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="no demo has run yet: run `mlzsl demo`"):
        latest_demo_checkpoint()


def test_remembered_demo_checkpoint_is_the_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache" / "nested"
    monkeypatch.setenv("MLZSL_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    remember_demo_checkpoint("runs/first.pt")  # relative: stored resolved
    assert latest_demo_checkpoint() == tmp_path / "runs" / "first.pt"
    remember_demo_checkpoint(tmp_path / "second.pt")
    assert latest_demo_checkpoint() == tmp_path / "second.pt"
    assert [p.name for p in cache.iterdir()] == ["latest_demo.txt"]  # no temporary file left
    (cache / "latest_demo.txt").write_text(f"  {tmp_path / 'third.pt'}\n")  # edited by hand
    assert latest_demo_checkpoint() == tmp_path / "third.pt"
