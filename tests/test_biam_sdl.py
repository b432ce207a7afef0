"""BiAM and SDL: the pooling rules that define their scores, SDL's regulariser, a tiny overfit."""

from __future__ import annotations

import pytest
import torch

from mlzsl.errors import ConfigError
from mlzsl.models import create_model
from mlzsl.training.losses import ranking_loss

torch.set_num_threads(1)

C, E, H, W = 16, 12, 4, 4


def _inputs(batch: int = 3, labels: int = 5, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, C, H, W, generator=g).relu(), torch.randn(labels, E, generator=g)


def _build(name: str, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, in_channels=C, embed_dim=E, **kwargs)


def test_biam_score_is_mean_of_top_k_region_scores() -> None:
    model = _build("biam", top_k=3).eval()
    features, labels = _inputs()
    with torch.no_grad():
        regions = model.forward_embeddings(features)
        per_region = model.region_scores(regions, labels)  # [B, P, L]
        scores = model(features, labels)
    assert per_region.shape == (3, H * W, 5)
    expected = torch.empty(3, 5)
    for b in range(3):
        for c in range(5):
            column = sorted(per_region[b, :, c].tolist(), reverse=True)
            expected[b, c] = sum(column[:3]) / 3
    torch.testing.assert_close(scores, expected)


def test_biam_top_k_larger_than_positions_is_clipped_to_the_mean() -> None:
    model = _build("biam", top_k=100).eval()
    features, labels = _inputs()
    with torch.no_grad():
        per_region = model.region_scores(model.forward_embeddings(features), labels)
        scores = model(features, labels)
    torch.testing.assert_close(scores, per_region.mean(dim=1))


def _biam_fc7() -> torch.nn.Module:
    torch.manual_seed(0)  # the same random VGG19 each time: stands in for the torchvision file
    return create_model("biam", in_channels=512, embed_dim=E, scene="fc7", vgg_weights="random")


def test_biam_fc7_scene_is_the_frozen_vgg19_fc7_of_the_map() -> None:
    model = _biam_fc7().train()
    assert not model.scene_vgg.training  # frozen: dropout off even in train mode
    g = torch.Generator().manual_seed(3)
    maps = torch.randn(2, 512, 14, 14, generator=g).relu()  # conv5_4 after ReLU
    pooled = torch.nn.functional.max_pool2d(maps, 2).flatten(1)  # pool5 -> [2, 25088]
    fc = model.scene_vgg.classifier
    expected = (fc[3](fc[0](pooled).relu())).relu()  # fc6, ReLU, fc7, ReLU (BiAM's vgg_net)
    torch.testing.assert_close(model.scene_vector(maps), expected)
    scores = model.eval()(maps, torch.randn(4, E, generator=g))
    assert scores.shape == (2, 4) and torch.isfinite(scores).all()
    assert not any(p.requires_grad for p in model.scene_vgg.parameters())


def test_biam_fc7_checkpoints_leave_the_vgg_out_and_reload() -> None:
    model = _biam_fc7().eval()
    state = model.state_dict()
    assert not any(k.startswith("scene_vgg.") for k in state)
    assert sum(v.numel() for v in state.values()) < 5_000_000  # the head only, not VGG's 139 M
    again = _biam_fc7().eval()
    again.load_state_dict(state)  # strict: only the VGG keys are forgiven
    maps, labels = torch.randn(1, 512, 14, 14).relu(), torch.randn(3, E)
    torch.testing.assert_close(again(maps, labels), model(maps, labels))
    del state["label_map.weight"]
    with pytest.raises(RuntimeError, match="label_map.weight"):
        again.load_state_dict(state)


def test_biam_fc7_needs_vgg19_conv5_4_maps() -> None:
    with pytest.raises(ConfigError, match="vgg_weights"):
        _build("biam", scene="fc7")  # no weights
    with pytest.raises(ConfigError, match="in_channels 512"):
        _build("biam", scene="fc7", vgg_weights="random")  # C = 16
    with pytest.raises(ConfigError, match="only used with scene='fc7'"):
        _build("biam", vgg_weights="random")
    with pytest.raises(ConfigError, match="512×14×14"):
        _biam_fc7()(torch.randn(1, 512, 7, 7), torch.randn(3, E))


def test_biam_handles_other_map_sizes() -> None:
    model = _build("biam").eval()
    with torch.no_grad():
        scores = model(torch.randn(2, C, 2, 3).relu(), torch.randn(4, E))
    assert scores.shape == (2, 4)


@pytest.mark.parametrize(
    "kwargs", [{"scene": "fc7"}, {"num_heads": 3}, {"top_k": 0}, {"dropout": 1.0}]
)
def test_biam_rejects_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="biam"):
        _build("biam", **kwargs)


def test_sdl_score_is_max_over_principal_vectors() -> None:
    model = _build("sdl", num_vectors=4, normalize_labels=False).eval()
    features, labels = _inputs()
    with torch.no_grad():
        vectors = model.forward_embeddings(features)  # [B, K, E]
        scores = model(features, labels)
    assert vectors.shape == (3, 4, E)
    expected = torch.empty(3, 5)
    for b in range(3):
        for c in range(5):
            expected[b, c] = max(float(vectors[b, k] @ labels[c]) for k in range(4))
    torch.testing.assert_close(scores, expected)


def test_sdl_vectors_follow_the_released_interleaved_layout() -> None:
    model = _build("sdl", num_vectors=3).eval()
    features, _ = _inputs()
    with torch.no_grad():
        flat = model.head(features.mean(dim=(2, 3)))  # [B, K·E]
        vectors = model.forward_embeddings(features)
    torch.testing.assert_close(vectors[:, 1], flat[:, 1::3])


def test_sdl_extra_loss_is_the_weighted_variance_across_vectors() -> None:
    model = _build("sdl", variance_weight=0.5).train()
    features, labels = _inputs()
    model(features, labels)
    value = model.extra_loss(torch.ones(features.shape[0], labels.shape[0]))  # targets unused
    assert value is not None and value.ndim == 0 and value > 0
    vectors = model.forward_embeddings(features)
    expected = 0.5 * vectors.var(dim=1).sum(dim=1).mean()
    torch.testing.assert_close(value, expected)


def test_sdl_extra_loss_is_none_in_eval_or_with_zero_weight_or_one_vector() -> None:
    features, labels = _inputs()
    targets = torch.ones(features.shape[0], labels.shape[0])
    model = _build("sdl").eval()
    model(features, labels)
    assert model.extra_loss(targets) is None
    for kwargs in ({"variance_weight": 0.0}, {"num_vectors": 1}):
        model = _build("sdl", **kwargs).train()
        model(features, labels)
        assert model.extra_loss(targets) is None


@pytest.mark.parametrize("name", ["biam", "sdl"])
def test_tiny_overfit_reduces_ranking_loss(name: str) -> None:
    model = _build(name).train()
    g = torch.Generator().manual_seed(3)
    features = torch.randn(8, C, H, W, generator=g).relu()
    labels = torch.randn(10, E, generator=g)
    targets = torch.where(torch.rand(8, 10, generator=g) < 0.3, 1, -1)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_now() -> float:
        with torch.no_grad():
            return float(ranking_loss(model.eval()(features, labels), targets))

    before = loss_now()
    model.train()
    for _ in range(100):
        optimiser.zero_grad()
        loss = ranking_loss(model(features, labels), targets)
        extra = model.extra_loss(targets)
        (loss if extra is None else loss + extra).backward()
        optimiser.step()
    after = loss_now()
    assert after < 0.5 * before, (before, after)
