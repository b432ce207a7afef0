"""(ML)²P-Encoder: released sizes, the release's choices, and the scoring rule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlzsl.config import load_config, packaged_config
from mlzsl.errors import ConfigError
from mlzsl.models import count_parameters, create_model
from mlzsl.models._layers import GroupAttention, channel_shuffle
from mlzsl.models.ml2p import ML2PEncoder
from mlzsl.training.engine import peak_lr
from mlzsl.training.losses import ranking_loss

torch.set_num_threads(1)

C, E, G, H, W = 16, 12, 3, 4, 4
P = H * W


def small(**extra: object) -> nn.Module:
    torch.manual_seed(0)
    kwargs: dict[str, object] = dict(in_channels=C, embed_dim=E, groups=G, num_positions=P)
    return create_model("ml2p", **{**kwargs, **extra})


def inputs(batch: int = 2, labels: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(batch, C, H, W, generator=g).relu(), torch.randn(labels, E, generator=g)


def test_released_sizes_match_the_papers_head_count() -> None:
    """At C=2048, E=300, G=7, P=49 our head has 18,001,907 parameters (arithmetic in ml2p.py).

    The paper's ~18.9 M also holds the VGG pyramid transforms (1×1 conv without bias + BN on
    pool3 256->512, pool4 512->512, pool5 512->1024), which the feature-map variant does not have.
    """
    model = create_model("ml2p", in_channels=2048, embed_dim=300)  # P=49, G=7 by default
    assert count_parameters(model) == 18_001_907
    assert count_parameters(model.embed) == 2048 * 2100 + 2100
    assert count_parameters(model.channel_attention) == (2100 * 6300 + 6300) + 6300 * 10 + 7
    assert count_parameters(model.mixer) == 2 * 2 * 300 + (49 * 9 + 9 + 9 * 49 + 49) + (
        300 * 60 + 60 + 60 * 300 + 300
    )
    assert count_parameters(model.group_attention) == 2 * 2 * (300 * 300 + 300)
    pyramid = nn.ModuleList(
        [
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
            for c_in, c_out in [(256, 512), (512, 512), (512, 1024)]
        ]
    )
    assert count_parameters(pyramid) == 921_600
    assert round((count_parameters(model) + count_parameters(pyramid)) / 1e6, 1) == 18.9


def test_mixer_hidden_sizes_follow_the_release_rule() -> None:
    model = create_model("ml2p", in_channels=8, embed_dim=300, num_positions=49)
    block = model.mixer[0]
    assert block.mlp_token[0].out_features == 9  # 49 // 5
    assert block.mlp_channel[0].out_features == 60  # 300 // 5
    demo = create_model("ml2p", in_channels=8, embed_dim=50, num_positions=25, num_blocks=2)
    assert len(demo.mixer) == 2
    assert demo.mixer[0].mlp_token[0].out_features == 5
    assert demo.mixer[0].mlp_channel[0].out_features == 10
    assert demo.mixer[0].norm_token.normalized_shape == (50,)  # LN over E, as released


def test_channel_shuffle_moves_group_channels_to_interleaved_positions() -> None:
    x = torch.arange(6.0).reshape(1, 6, 1, 1)  # 2 groups of 3 channels
    out = channel_shuffle(x, 2).flatten().tolist()
    assert out == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]  # channel g·3 + e -> e·2 + g


def test_temperature_is_learnable_and_per_group() -> None:
    model = small()
    tau = model.channel_attention.temperature
    assert tau.shape == (G, 1, 1) and tau.requires_grad
    torch.testing.assert_close(tau.detach(), torch.ones(G, 1, 1))
    features, labels = inputs()
    x = channel_shuffle(model.embed(features), G)
    with torch.no_grad():
        before, _ = model.channel_attention.attention_map(x)
        tau[0] = 5.0
        after, _ = model.channel_attention.attention_map(x)
    assert not torch.allclose(before[:, 0], after[:, 0])
    torch.testing.assert_close(before[:, 1:], after[:, 1:])
    torch.testing.assert_close(after.sum(dim=-1), torch.ones_like(after.sum(dim=-1)))  # softmax
    ranking_loss(model(features, labels), torch.tensor([[1, -1, 0, 1, -1, -1]] * 2)).backward()
    assert tau.grad is not None and tau.grad.abs().sum() > 0


def test_attention_residual_changes_the_output() -> None:
    plain, residual = small(), small(attention_residual=True)
    residual.load_state_dict(plain.state_dict())  # no extra parameters
    features, labels = inputs()
    with torch.no_grad():
        assert not torch.allclose(plain(features, labels), residual(features, labels))


def test_group_affinity_has_no_softmax_and_no_scaling() -> None:
    attention = GroupAttention(embed_dim=2)
    attention.query, attention.key = nn.Identity(), nn.Identity()  # q = k = v = x
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # [B=1, G=2, E=2]
    # x xᵀ = diag(1, 4); (x xᵀ) x = [[1, 0], [0, 8]]; a softmax or 1/√E would change it
    torch.testing.assert_close(attention(x), torch.tensor([[[1.0, 0.0], [0.0, 8.0]]]))


@pytest.mark.parametrize("normalize", [True, False])
def test_score_is_max_over_groups_of_dot_products(normalize: bool) -> None:
    model = small(normalize_labels=normalize).eval()
    features, labels = inputs()
    with torch.no_grad():
        vectors = model.forward_embeddings(features)  # [B, G, E]
        scores = model(features, labels)
    assert vectors.shape == (2, G, E)
    used = labels / labels.norm(dim=1, keepdim=True) if normalize else labels
    for b in range(2):
        for c in range(labels.shape[0]):
            expected = max(float(vectors[b, g] @ used[c]) for g in range(G))
            assert scores[b, c].item() == pytest.approx(expected, abs=1e-5)


def test_interleave_reads_vectors_as_the_released_reshape() -> None:
    grouped, interleaved = small(interleave_groups=False), small(interleave_groups=True)
    interleaved.load_state_dict(grouped.state_dict())
    features, _ = inputs()
    with torch.no_grad():
        out = grouped.forward_embeddings(features)  # [B, G, E], the group outputs
        vectors = interleaved.forward_embeddings(features)
    for b in range(2):  # numpy's np_output.reshape(E, G).T on one image's (G, E) output
        torch.testing.assert_close(vectors[b], out[b].reshape(E, G).T)


def test_a_few_steps_reduce_the_ranking_loss() -> None:
    model = small().train()
    features, labels = inputs(batch=8)
    targets = torch.where(torch.randn(8, 6, generator=torch.Generator().manual_seed(4)) > 0, 1, -1)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        optimiser.zero_grad()
        loss = ranking_loss(model(features, labels), targets)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < 0.4 * losses[0]


def test_map_size_mismatch_names_num_positions() -> None:
    model = small()
    with pytest.raises(ConfigError, match="num_positions"):
        model(torch.randn(1, C, 5, 5), torch.randn(3, E))


@pytest.mark.parametrize("key", ["groups", "num_blocks", "token_reduction", "num_positions"])
def test_non_positive_sizes_raise_config_error(key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        small(**{key: 0})


def test_position_pooling_scores_keeps_every_position() -> None:
    torch.manual_seed(0)
    kwargs = dict(in_channels=8, embed_dim=6, num_positions=9, groups=2)
    model = ML2PEncoder(**kwargs, position_pooling="scores").eval()
    feats, labels = torch.randn(4, 8, 3, 3).relu(), torch.randn(5, 6)
    emb = model.forward_embeddings(feats)
    assert emb.shape == (4, 9 * 2, 6)  # P·G scoring vectors
    manual = torch.einsum("bke,le->bkl", emb, F.normalize(labels, dim=-1)).amax(dim=1)
    torch.testing.assert_close(model(feats, labels), manual)
    torch.testing.assert_close(model(feats[1:2], labels), model(feats, labels)[1:2])
    perm = torch.randperm(5)
    torch.testing.assert_close(model(feats, labels[perm]), model(feats, labels)[:, perm])
    model.train()
    model(feats, labels).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ConfigError, match="position_pooling"):
        ML2PEncoder(**kwargs, position_pooling="mean")


def test_group_attention_scale_divides_the_affinity_by_root_e() -> None:
    attention = GroupAttention(embed_dim=4, scale=True)
    attention.query, attention.key = nn.Identity(), nn.Identity()  # q = k = v = x
    x = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]]])  # [B=1, G=2, E=4]
    expected = torch.tensor([[[0.5, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0]]])  # (x xᵀ / 2) x
    torch.testing.assert_close(attention(x), expected)
    assert not small().group_attention.scale  # off by default, as released


def _average_precision(scores: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean over labels of the average precision; scores and truth [N, L]."""
    aps = []
    for label in range(truth.shape[1]):
        ranked = truth[scores[:, label].argsort(descending=True), label].float()  # [N]
        precision = ranked.cumsum(0) / torch.arange(1, len(ranked) + 1)
        aps.append(float((precision * ranked).sum() / ranked.sum()))
    return sum(aps) / len(aps)


@pytest.mark.parametrize(
    "config, scale",
    [("scenes/ml2p", False), ("scenes_e300/ml2p", True)],
    ids=["scenes-lr-reference", "scenes_e300-scaled"],
)
def test_ml2p_learns_unseen_labels_at_e_300(config: str, scale: bool) -> None:
    """E = 300 (8-d label geometry, orthogonally lifted) with each packaged recipe's lr at E = 300
    (configs/scenes/ml2p: 3e-3 · 50 / 300 by lr_reference_dim; scenes_e300/ml2p: 5e-4 and the
    group attention's 1/√E): ZSL above chance.

    Each image holds 2 of 16 labels, each drawn at one of 25 positions as a fixed linear image of
    its label vector plus noise; 12 labels are seen in training, 4 only at test.
    """
    from mlzsl.embeddings.lift import lift_matrix

    g = torch.Generator().manual_seed(0)
    labels, seen, channels, positions = 16, 12, 24, 25
    base = F.normalize(torch.randn(labels, 8, generator=g), dim=1)  # [L, 8]
    vectors = base @ torch.tensor(lift_matrix(300, 8), dtype=torch.float32).T  # [L, 300]
    visual = torch.randn(channels, 8, generator=g)  # label geometry -> image channels

    def images(n: int, pool: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = 0.3 * torch.randn(n, channels, positions, generator=g)  # [N, C, P]
        truth = torch.zeros(n, labels, dtype=torch.bool)  # [N, L]
        for i in range(n):
            for c, p in zip(
                torch.randperm(pool, generator=g)[:2].tolist(),
                torch.randperm(positions, generator=g)[:2].tolist(),
                strict=True,
            ):
                x[i, :, p] += visual @ base[c]
                truth[i, c] = True
        return x.reshape(n, channels, 5, 5), truth

    train_x, train_truth = images(192, seen)
    test_x, test_truth = images(96, labels)
    torch.manual_seed(0)
    model = ML2PEncoder(
        in_channels=channels,
        embed_dim=300,
        num_positions=positions,
        groups=2,
        position_pooling="scores",
        attention_residual=True,
        interleave_groups=False,
        group_attention_scale=scale,
    ).train()
    recipe = load_config(packaged_config(*config.split("/")))
    assert recipe.model_args.get("group_attention_scale", False) == scale
    lr = peak_lr(recipe, 300)
    assert lr == pytest.approx(5e-4)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    for _ in range(5):  # epochs
        for start in range(0, 192, 32):
            targets = train_truth[start : start + 32, :seen].float() * 2 - 1  # [B, S] in ±1
            scores = model(train_x[start : start + 32], vectors[:seen])
            loss = F.binary_cross_entropy_with_logits(scores, (targets > 0).float())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        scores = model(test_x, vectors)  # [N, L]
    unseen = test_truth[:, seen:]
    chance = float(unseen.float().mean())  # the AP of a random ranking, about 1/8
    ap = _average_precision(scores[:, seen:], unseen)
    assert ap > chance + 0.25, (ap, chance)
