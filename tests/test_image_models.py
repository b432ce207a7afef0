"""Image-input models (ml2p_official) through the engine: the ``pixels`` store, train, eval, tag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mlzsl.backbones import create_backbone
from mlzsl.config import load_config
from mlzsl.errors import ConfigError
from mlzsl.images import load_image
from mlzsl.inference.evaluation import evaluate_checkpoint
from mlzsl.inference.tagger import Tagger
from mlzsl.store.extract import extract_features
from mlzsl.store.feature_store import FeatureStore
from mlzsl.training.engine import build_model, fit
from tests.conftest import make_image_folder

SIDE = 32  # the smallest side VGG19-BN's pool5 accepts: keeps the trunk cheap on one thread


@pytest.fixture(scope="module")
def pixel_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_image_folder(tmp_path_factory.mktemp("px") / "data", 18, size=40)
    out = root.parent / "pixels.h5"
    extract_features(root, out, backbone="pixels", image_size=SIDE, workers=0, show_progress=False)
    return out


def test_pixels_backbone_is_the_identity_with_the_release_normalisation() -> None:
    net = create_backbone("pixels", image_size=SIDE)
    x = torch.randn(2, 3, SIDE, SIDE)
    assert torch.equal(net(x), x)
    assert net.output_shape() == (3, SIDE, SIDE)
    assert net.spec.mean == (0.4914, 0.4822, 0.4465)  # CIFAR-10, as (ML)²P's test script
    assert net.identity()["weights"] == "none" and not list(net.parameters())
    with pytest.raises(ConfigError, match="no parameters"):
        create_backbone("pixels", weights="random")


def test_pixel_store_holds_the_normalised_images(pixel_store: Path) -> None:
    store = FeatureStore(pixel_store)
    assert store.header.feature_shape == (3, SIDE, SIDE)
    spec = create_backbone("pixels").spec
    path = Path(store.header.meta["source"]) / store.image_ids[5]
    expected = load_image(path, SIDE, np.asarray(spec.mean), np.asarray(spec.std))  # [3, S, S]
    np.testing.assert_allclose(store.features(5), expected, atol=2e-3)  # float16 storage


def test_ml2p_official_trains_evaluates_and_tags_from_a_pixel_store(
    pixel_store: Path, tmp_path: Path
) -> None:
    config = load_config(
        None,
        [
            "model=ml2p_official",
            "epochs=2",
            "batch_size=6",
            "lr=0.001",
            "loss=bce",
            "model_args.freeze_trunk=true",
        ],
    )
    result = fit(config, pixel_store, tmp_path / "run", quiet=True)
    assert len(result.history) == 2
    assert all(np.isfinite(h["loss"]) for h in result.history)
    name, evaluated = evaluate_checkpoint(tmp_path / "run" / "best.pt", pixel_store)
    assert name == "ml2p_official"
    assert evaluated.primary.to_dict() == result.best.to_dict()  # same weights, same scores
    store = FeatureStore(pixel_store)
    image = Path(store.header.meta["source"]) / store.image_ids[0]
    tags = Tagger.from_checkpoint(tmp_path / "run" / "best.pt").tag([image], "red, blue", top_k=2)
    assert sorted(t.label for t in tags[0]) == ["blue", "red"]


def test_an_image_model_refuses_a_feature_map_store() -> None:
    config = load_config(None, ["model=ml2p_official"])
    with pytest.raises(ConfigError, match="--backbone pixels"):
        build_model(config, (1280, 2, 2), 50)
    model = build_model(config, (3, 64, 64), 50)
    assert model.image_size == 64  # the store decides the input side
