"""LESA and its peers: lesa, attention_per_cluster, kim_bilinear (regularisers, attention, fit)."""

from __future__ import annotations

import pytest
import torch

from mlzsl.errors import ConfigError
from mlzsl.models import create_model
from mlzsl.models.lesa import distribution_regularizer, global_regularizer, span_regularizer
from mlzsl.training.losses import ranking_loss

torch.set_num_threads(1)

B, C, H, W, E, L = 8, 16, 4, 4, 12, 6
PEERS = ["lesa", "attention_per_cluster", "kim_bilinear"]
SMALL = {"attention_per_cluster": {"num_clusters": 3}}


def build(name: str, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, in_channels=C, embed_dim=E, **{**SMALL.get(name, {}), **kwargs})


def data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(B, C, H, W, generator=g).relu()  # [B, C, H, W]
    vectors = torch.randn(L, E, generator=g)  # [L, E]
    targets = torch.randint(0, 2, (B, L), generator=g) * 2 - 1  # [B, L] in {+1, -1}
    targets[:, 0] = 1  # every image has a positive and a negative
    targets[:, 1] = -1
    return features, vectors, targets


# -- regularisers


def test_lesa_extra_loss_positive_in_train_mode() -> None:
    model = build("lesa").train()
    features, vectors, targets = data()
    model(features, vectors)
    span_only = model.lambda_span * span_regularizer(model._cache["logits"])
    full = model.extra_loss(targets)
    assert span_only is not None and full is not None
    assert span_only.ndim == 0 and span_only > 0
    assert full > span_only  # the distribution term is positive whenever an image has a positive


def test_lesa_extra_loss_none_in_eval_or_with_zero_weights() -> None:
    features, vectors, targets = data()
    model = build("lesa").eval()
    model(features, vectors)
    assert model.extra_loss(targets) is None
    off = build("lesa", lambda_span=0.0, lambda_dist=0.0, lambda_global=0.0).train()
    off(features, vectors)
    assert off.extra_loss(targets) is None


def test_lesa_extra_loss_rejects_mismatched_targets() -> None:
    model = build("lesa").train()
    features, vectors, targets = data()
    model(features, vectors)
    with pytest.raises(ConfigError, match="targets"):
        model.extra_loss(targets[:, :2])


def test_lesa_extra_loss_weights_each_term() -> None:
    features, vectors, targets = data()
    span = build("lesa", lambda_dist=0.0, lambda_global=0.0).train()
    span(features, vectors)
    logits = span._cache["logits"]
    torch.testing.assert_close(span.extra_loss(targets), 0.01 * span_regularizer(logits))
    dist = build("lesa", lambda_span=0.0, lambda_global=0.0).train()
    dist(features, vectors)
    expected = 0.1 * distribution_regularizer(dist._cache["attention_scores"], targets)
    torch.testing.assert_close(dist.extra_loss(targets), expected)


def test_span_regularizer_zero_for_orthogonal_maps_and_grows_with_overlap() -> None:
    orthogonal = torch.eye(3).unsqueeze(0)  # [1, T=3, P=3]
    assert span_regularizer(orthogonal) == 0
    same = torch.ones(2, 3, 5)  # [B, T, P]: every pair has cosine 1; 2 images × 6 pairs
    torch.testing.assert_close(span_regularizer(same), torch.tensor(12.0).sqrt())


def test_distribution_regularizer_prefers_spread_labels() -> None:
    targets = torch.tensor([[1, 1, -1]])  # [B=1, L=3]
    together = torch.tensor([[[9.0, 9.0, 0.0], [0.0, 0.0, 0.0]]])  # [1, T=2, L]: both on t=0
    spread = torch.tensor([[[9.0, 0.0, 0.0], [0.0, 9.0, 0.0]]])  # one positive per attention
    assert distribution_regularizer(spread, targets) < distribution_regularizer(together, targets)


def test_global_regularizer_ignores_unannotated_and_satisfied_entries() -> None:
    scores = torch.tensor([[2.0, 0.0, 5.0]])
    global_scores = torch.tensor([[1.0, 1.0, 0.0]])
    # +1 ahead of global: 0; -1 below global: 0; 0 target: ignored
    assert global_regularizer(scores, global_scores, torch.tensor([[1, -1, 0]])) == 0
    # +1 behind global by 1, -1 ahead of global by 1
    assert global_regularizer(global_scores, scores, torch.tensor([[1, -1, 0]])) == 2


def test_attention_per_cluster_extra_loss() -> None:
    features, vectors, targets = data()
    model = build("attention_per_cluster").train()
    model(features, vectors)
    value = model.extra_loss(targets)
    assert value is not None and value > 0
    torch.testing.assert_close(value, 0.01 * span_regularizer(model._logits))  # targets unused
    model.eval()
    model(features, vectors)
    assert model.extra_loss(targets) is None
    off = build("attention_per_cluster", lambda_span=0.0).train()
    off(features, vectors)
    assert off.extra_loss(targets) is None


# -- attention and shapes


@pytest.mark.parametrize("name", ["lesa", "attention_per_cluster"])
def test_shared_attention_sums_to_one_over_regions(name: str) -> None:
    model = build(name).eval()
    features, _, _ = data()
    with torch.no_grad():
        maps = model.attention_maps(features)
    heads = 10 if name == "lesa" else 3
    assert maps.shape == (B, heads, H * W)
    torch.testing.assert_close(maps.sum(dim=2), torch.ones(B, heads))
    assert (maps >= 0).all()


def test_kim_attention_sums_to_one_over_regions() -> None:
    model = build("kim_bilinear").eval()
    features, vectors, _ = data()
    with torch.no_grad():
        maps = model.attention_maps(model.forward_embeddings(features), vectors)
    assert maps.shape == (B, L, H * W)
    torch.testing.assert_close(maps.sum(dim=2), torch.ones(B, L))
    assert not torch.allclose(maps[:, 0], maps[:, 1])  # label-specific


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (14, 14)])
def test_lesa_conv_keeps_the_map_size(size: tuple[int, int]) -> None:
    model = build("lesa").eval()
    with torch.no_grad():
        maps = model.attention_maps(torch.randn(2, C, *size))
    assert maps.shape == (2, 10, size[0] * size[1])


def test_lesa_conv_channels_and_no_conv() -> None:
    features, vectors, _ = data()
    narrow = build("lesa", conv_channels=8).eval()
    assert narrow.forward_embeddings(features).shape == (B, 10, 8)
    plain = build("lesa", use_conv=False).eval()
    assert plain.forward_embeddings(features).shape == (B, 10, C)
    assert plain(features, vectors).shape == (B, L)
    with pytest.raises(ConfigError, match="conv_channels"):
        build("lesa", conv_channels=0)


# -- attention per cluster: the codebook


def test_cluster_codebook_fitted_once_on_first_training_call() -> None:
    features, vectors, _ = data()
    model = build("attention_per_cluster").train()
    assert not model.centres_fitted
    model(features, vectors)
    assert model.centres_fitted
    fitted = model.centres.clone()
    model(features, vectors[:4])  # a later label set does not refit
    torch.testing.assert_close(model.centres, fitted)
    assert len(set(model.clusters(vectors).tolist())) > 1
    again = build("attention_per_cluster").train()
    again(features, vectors)
    torch.testing.assert_close(again.centres, fitted)  # deterministic


def test_cluster_assignment_independent_of_other_labels_after_fitting() -> None:
    features, vectors, _ = data()
    model = build("attention_per_cluster").train()
    model(features, vectors)
    model.eval()
    with torch.no_grad():
        full = model(features, vectors)
        torch.testing.assert_close(model(features, vectors[[5, 2]]), full[:, [5, 2]])


def test_cluster_fit_needs_enough_labels() -> None:
    model = build("attention_per_cluster")
    with pytest.raises(ConfigError, match="at least"):
        model.fit_centres(torch.randn(2, E))
    model.train()(data()[0], torch.randn(2, E))  # too few to fit: keeps the random codebook
    assert not model.centres_fitted


# -- a tiny overfit


@pytest.mark.parametrize("name", PEERS)
def test_tiny_overfit_reduces_ranking_loss(name: str) -> None:
    model = build(name).train()
    features, vectors, targets = data()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_now() -> float:
        with torch.no_grad():
            return float(ranking_loss(model.eval()(features, vectors), targets))

    model(features, vectors)  # the first training call fits attention_per_cluster's codebook
    before = loss_now()
    model.train()
    for _ in range(100):
        scores = model(features, vectors)
        loss = ranking_loss(scores, targets)
        extra = model.extra_loss(targets)
        if extra is not None:
            loss = loss + extra
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss_now() < 0.5 * before
