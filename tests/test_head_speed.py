"""Issue 13: the fast (ML)²P head equals the formulation it replaced; ``input_pool`` (pool5).

The references below are copies of the forward passes as they were before the channels-last
rewrite (conv on NCHW, explicit channel shuffle, normalised q and k, ``attn @ v``), written with
plain ``torch.nn.functional`` calls on the modules' parameters so that they do not move with the
code they check.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlzsl.config import load_config, packaged_config
from mlzsl.errors import ConfigError
from mlzsl.models import create_model
from mlzsl.models._layers import ChannelCorrelationAttention, MixerBlock, channel_shuffle_index
from mlzsl.models.ml2p import ML2PEncoder
from mlzsl.training.engine import build_model

torch.set_num_threads(1)

C, E, G = 16, 12, 3


def reference_channel_attention(block: ChannelCorrelationAttention, x: Tensor) -> Tensor:
    """[B, G·E, H, W] -> [B, G, E, P], the NCHW formulation."""
    b, _, h, w = x.shape
    g, e = block.groups, block.embed_dim
    qkv = F.conv2d(x, block.qkv.weight, block.qkv.bias)  # [B, 3·G·E, H, W]
    qkv = F.conv2d(qkv, block.qkv_dwconv.weight, block.qkv_dwconv.bias, padding=1, groups=3 * g * e)
    q, k, v = (t.reshape(b, g, e, h * w) for t in qkv.chunk(3, dim=1))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    out = (q @ k.transpose(-2, -1) * block.temperature).softmax(dim=-1) @ v  # [B, G, E, P]
    return out + x.reshape(out.shape) if block.residual else out


def reference_mixer(block: MixerBlock, x: Tensor) -> Tensor:
    """[B, G, P, E] -> [B, G, P, E]: token MLP along P, channel MLP along E, both LN over E."""

    def mlp(mlp: nn.Module, y: Tensor) -> Tensor:
        return F.linear(F.gelu(F.linear(y, mlp[0].weight, mlp[0].bias)), mlp[2].weight, mlp[2].bias)

    e = x.shape[-1]
    norm_t, norm_c = block.norm_token, block.norm_channel
    y = F.layer_norm(x, (e,), norm_t.weight, norm_t.bias, norm_t.eps).transpose(-1, -2)
    x = x + mlp(block.mlp_token, y).transpose(-1, -2)
    return x + mlp(block.mlp_channel, F.layer_norm(x, (e,), norm_c.weight, norm_c.bias, norm_c.eps))


def reference_ml2p(model: ML2PEncoder, features: Tensor) -> Tensor:
    """``ML2PEncoder.forward_embeddings`` before issue 13 (plus the pool the option adds)."""
    b, g, e = features.shape[0], model.groups, model.embed_dim
    if model.input_pool > 1:
        features = F.max_pool2d(features, model.input_pool)
    x = F.conv2d(features, model.embed.weight, model.embed.bias)  # [B, G·E, H, W]
    _, c, h, w = x.shape
    x = x.reshape(b, g, c // g, h, w).transpose(1, 2).reshape(b, c, h, w)  # channel shuffle
    x = reference_channel_attention(model.channel_attention, x).transpose(-1, -2)  # [B, G, P, E]
    for block in model.mixer:
        x = reference_mixer(block, x)
    if model.position_pooling == "features":
        x = torch.sigmoid(x.amax(dim=2))[:, None]  # [B, 1, G, E]
    else:
        x = torch.sigmoid(x).transpose(1, 2)  # [B, P, G, E]
    x = model.group_attention(x)
    if model.interleave_groups:
        x = x.reshape(b, -1, e, g).transpose(-1, -2)
    return x.reshape(b, -1, e)


def _features(batch: int = 3, side: int = 8) -> Tensor:
    return torch.randn(batch, C, side, side, generator=torch.Generator().manual_seed(1)).relu()


def _ml2p(**options: object) -> ML2PEncoder:
    torch.manual_seed(0)
    model = create_model("ml2p", in_channels=C, embed_dim=E, groups=G, **options)
    assert isinstance(model, ML2PEncoder)
    return model


OPTIONS = list(
    itertools.product(("features", "scores"), (False, True), (False, True), (1, 2), (1, 2))
)


@pytest.mark.parametrize(
    "pooling, residual, interleave, input_pool, blocks",
    OPTIONS,
    ids=["-".join(str(v) for v in o) for o in OPTIONS],
)
def test_ml2p_equals_the_formulation_it_replaced(
    pooling: str, residual: bool, interleave: bool, input_pool: int, blocks: int
) -> None:
    model = _ml2p(
        num_positions=64,
        input_pool=input_pool,
        position_pooling=pooling,
        attention_residual=residual,
        interleave_groups=interleave,
        num_blocks=blocks,
    )
    features, labels = _features(), torch.randn(5, E)
    with torch.no_grad():
        expected = reference_ml2p(model, features)
        got = model.forward_embeddings(features)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(features, labels), model.score(expected, labels))


def test_ml2p_gradients_equal_the_formulation_it_replaced() -> None:
    model = _ml2p(num_positions=64, attention_residual=True)
    features = _features()
    grads = []
    for forward in (model.forward_embeddings, lambda f: reference_ml2p(model, f)):
        model.zero_grad()
        forward(features).square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() == {n for n, _ in model.named_parameters()}
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("residual", [False, True])
def test_shared_blocks_equal_their_nchw_formulation(residual: bool) -> None:
    """ml2p_official reads the same blocks through ``forward`` ([B, G, E, P], NCHW in)."""
    torch.manual_seed(0)
    attention = ChannelCorrelationAttention(groups=G, embed_dim=E, residual=residual)
    mixer = MixerBlock(num_positions=25, embed_dim=E, token_hidden=5, channel_hidden=2)
    x = torch.randn(2, G * E, 5, 5)
    with torch.no_grad():
        out = attention(x)
        torch.testing.assert_close(out, reference_channel_attention(attention, x))
        torch.testing.assert_close(
            attention.forward_positions(x), out.transpose(-1, -2), rtol=0, atol=0
        )
        y = out.transpose(-1, -2)
        torch.testing.assert_close(mixer(y), reference_mixer(mixer, y), rtol=1e-5, atol=1e-5)


def test_ml2p_official_head_equals_its_nchw_formulation() -> None:
    torch.manual_seed(0)
    model = create_model("ml2p_official", in_channels=3, embed_dim=E, image_size=64, groups=G)
    head = model.Channel_MLP
    x = torch.randn(2, G * E, 2, 2)
    with torch.no_grad():
        y = reference_channel_attention(head.channel_attn, x).transpose(-1, -2)
        expected = torch.sigmoid(reference_mixer(head.channel_mlp, y).amax(dim=2))
        torch.testing.assert_close(head(x), expected, rtol=1e-5, atol=1e-5)


def test_channel_shuffle_index_is_the_shuffle() -> None:
    x = torch.randn(2, 12, 3, 3)
    index = channel_shuffle_index(12, 3)
    expected = x.reshape(2, 3, 4, 3, 3).transpose(1, 2).reshape(2, 12, 3, 3)
    torch.testing.assert_close(x[:, index], expected, rtol=0, atol=0)


# ----------------------------------------------------------------------------- input_pool


def test_input_pool_is_max_pool_then_the_pooled_model() -> None:
    pooled = _ml2p(num_positions=64, input_pool=2)  # 8×8 stored, P = 16
    plain = _ml2p(num_positions=16)
    plain.load_state_dict(pooled.state_dict())  # same parameters, same names and shapes
    assert pooled.mixer[0].mlp_token[0].in_features == 16
    assert pooled.state_dict().keys() == plain.state_dict().keys()
    features, labels = _features(), torch.randn(4, E)
    with torch.no_grad():
        got = pooled(features, labels)
        torch.testing.assert_close(got, plain(F.max_pool2d(features, 2), labels))
    assert got.shape == (3, 4)
    with pytest.raises(ConfigError, match="num_positions=16"):
        plain(features, labels)  # the unpooled 8×8 map does not fit the P = 16 model


def test_input_pool_rejects_sizes_it_does_not_divide() -> None:
    with pytest.raises(ConfigError, match="input_pool"):
        _ml2p(num_positions=49, input_pool=2)  # a 7×7 map has no exact 2×2 pooling
    with pytest.raises(ConfigError, match="input_pool"):
        _ml2p(num_positions=16, input_pool=0)
    model = _ml2p(num_positions=24, input_pool=2)  # 4×6, or 2×12 ...
    with pytest.raises(ConfigError, match=r"H and W multiples of input_pool=2"):
        model(torch.randn(1, C, 3, 8), torch.randn(2, E))  # H·W = 24, but H is odd
    model(torch.randn(1, C, 4, 6), torch.randn(2, E))
    model(torch.randn(1, C, 2, 12), torch.randn(2, E))


@pytest.mark.parametrize("group", ["nus_wide", "open_images"])
def test_benchmark_configs_run_ml2p_at_pool5_size(group: str) -> None:
    """The NUS-WIDE and Open Images configs read 14×14 conv5_4 maps on the release's 7×7."""
    config = load_config(packaged_config(group, "ml2p"), ["embedder=glove50"])
    assert config.model_args["input_pool"] == 2
    model = build_model(config, (512, 14, 14), 300)
    assert model.config["num_positions"] == 196  # the stored map: old checkpoints' contract
    assert model.mixer[0].mlp_token[0].in_features == 49  # P of the release
    with torch.no_grad():
        scores = model(torch.randn(2, 512, 14, 14).relu(), torch.randn(3, 300))
    assert scores.shape == (2, 3) and torch.isfinite(scores).all()
    unpooled = build_model(
        load_config(
            packaged_config(group, "ml2p"), ["model_args.input_pool=1"] + ["embedder=glove50"]
        ),
        (512, 14, 14),
        300,
    )
    assert unpooled.mixer[0].mlp_token[0].in_features == 196


# ----------------------------------------------------------------------------- biam


def reference_biam(model: nn.Module, features: Tensor) -> Tensor:
    """``BiAM.forward_embeddings`` before issue 13: every block on NCHW maps."""
    h = model.front(features)  # [B, D, H, W]
    regions = model.region_block(h.flatten(2).transpose(1, 2))  # [B, P, D]
    scene = model.scene_block(h, features.mean(dim=(2, 3)))  # [B, D, H, W]
    fused = torch.cat([regions, scene.flatten(2).transpose(1, 2)], dim=2)  # [B, P, 2D]
    return F.leaky_relu(model.fuse(fused), 0.2)  # [B, P, R]


def test_biam_equals_the_formulation_it_replaced() -> None:
    torch.manual_seed(0)
    model = create_model("biam", in_channels=C, embed_dim=E, channel_dim=16, region_dim=24)
    model.eval()
    features, labels = _features(), torch.randn(7, E)
    with torch.no_grad():
        model(features, labels)  # BN statistics stay fixed in eval mode
        expected = reference_biam(model, features)
        torch.testing.assert_close(
            model.forward_embeddings(features), expected, rtol=1e-5, atol=1e-5
        )
        torch.testing.assert_close(model(features, labels), model.score(expected, labels))
