"""`biam` against a float64 numpy re-statement of akshitac8/BiAM's ``model.py`` (issue 14).

Random weights in the release's state-dict layout (1×1 convs as [O, I, 1, 1] kernels, the
release's module names) reach our model through ``release_key_map`` only. The scene vector x_g
is an input of the release's forward; our ``scene="pooled"`` model computes it as the mean of the
map, so the reference is handed that mean (``scene="fc7"``'s VGG19 path has its own test in
test_biam_sdl.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlzsl.models import create_model
from mlzsl.models.biam import release_key_map

torch.set_num_threads(1)

B, C, S, D, R, HEADS, E, L, TOP = 3, 6, 4, 8, 5, 2, 7, 9, 6  # S×S map, D channel_dim, R region
BN_EPS = 1e-3  # the release's CONV3_3 BatchNorm


def release_state(seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)

    def t(*shape: int, scale: float = 0.3) -> torch.Tensor:
        return torch.from_numpy(rng.normal(0, scale, shape))

    def bn(prefix: str, n: int) -> dict[str, torch.Tensor]:
        return {
            prefix + "weight": torch.from_numpy(rng.uniform(0.5, 1.5, n)),
            prefix + "bias": t(n, scale=0.2),
            prefix + "running_mean": t(n, scale=0.2),
            prefix + "running_var": torch.from_numpy(rng.uniform(0.5, 2.0, n)),
            prefix + "num_batches_tracked": torch.tensor(0),
        }

    state = {"conv_3X3.body.weight": t(D, C, 3, 3), "conv_3X3.body.bias": t(D)}
    state |= bn("conv_3X3.bn.", D)
    for name in ("w_q", "w_k", "w_v", "w_o"):
        state[f"region_context_block.{name}.weight"] = t(D, D, 1, 1)
        state[f"region_context_block.{name}.bias"] = t(D)
    sub = "region_context_block.sub_network."
    state |= {sub + "conv1.weight": t(2 * D, D, 1, 1), sub + "conv1.bias": t(2 * D)}
    state |= {sub + "conv2.weight": t(D, 2 * D, 1, 1), sub + "conv2.bias": t(D)}
    scb = "scene_context_block."
    state |= {scb + "w_g.weight": t(D, C, 1, 1), scb + "w_g.bias": t(D)}
    state |= {scb + "gcff.body.weight": t(D, D, 3, 3), scb + "gcff.body.bias": t(D)}
    state |= bn(scb + "gcff.bn.", D)
    state |= {scb + "channel_conv.body.weight": t(D, D, 1, 1), scb + "channel_conv.body.bias": t(D)}
    state |= {"W.weight": t(R, E), "W.bias": t(R)}
    state |= {"conv_1X1.body.weight": t(R, 2 * D, 1, 1), "conv_1X1.body.bias": t(R)}
    return {k: v if k.endswith("num_batches_tracked") else v.double() for k, v in state.items()}


# -- the release's forward, restated in numpy (float64, NCHW as the release)


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Stride-1 conv with 'same' zero padding (k odd): x [B, I, S, S], w [O, I, k, k]."""
    k = w.shape[2]
    pad = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((x.shape[0], w.shape[0]) + x.shape[2:])
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]
            out += np.einsum("bihw,oi->bohw", patch, w[:, :, dy, dx])
    return out + b[None, :, None, None]


def _bn(x: np.ndarray, p: dict[str, np.ndarray], prefix: str, training: bool) -> np.ndarray:
    if training:
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    else:
        mean, var = p[prefix + "running_mean"], p[prefix + "running_var"]
    norm = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + BN_EPS)
    return (
        norm * p[prefix + "weight"][None, :, None, None] + p[prefix + "bias"][None, :, None, None]
    )


def _conv3_3(x: np.ndarray, p: dict[str, np.ndarray], prefix: str, training: bool) -> np.ndarray:
    """CONV3_3: conv, ReLU, then BN."""
    y = np.maximum(_conv(x, p[prefix + "body.weight"], p[prefix + "body.bias"]), 0)
    return _bn(y, p, prefix + "bn.", training)


def _lrelu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 0.2 * x)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def reference_forward(
    p: dict[str, np.ndarray], x: np.ndarray, vecs: np.ndarray, x_g: np.ndarray, training: bool
) -> np.ndarray:
    """BiAM.forward(features, vecs, x_g) with dropout off; vecs already L2-normalised."""
    h_r = _conv3_3(x, p, "conv_3X3.", training)  # [B, D, S, S]
    # RCB
    rcb = "region_context_block."

    def conv1(y: np.ndarray, name: str) -> np.ndarray:
        return _conv(y, p[name + ".weight"], p[name + ".bias"])

    d_k, spa = D // HEADS, S

    def heads(y: np.ndarray) -> np.ndarray:
        return y.reshape(B, HEADS, d_k, spa * spa).transpose(0, 1, 3, 2)  # [B, h, P, d_k]

    q, k, v = (heads(conv1(h_r, rcb + n)) for n in ("w_q", "w_k", "w_v"))
    r_h = _softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(d_k), axis=-1)
    o_r = (r_h @ v).transpose(0, 2, 1, 3).reshape(B, -1, D)  # [B, P, D]
    o_r = o_r.transpose(0, 2, 1).reshape(B, D, spa, spa)
    o_r = conv1(o_r, rcb + "w_o") + h_r
    sub = rcb + "sub_network."
    e_r = conv1(np.maximum(conv1(o_r, sub + "conv1"), 0), sub + "conv2") + o_r
    # SCB
    scb = "scene_context_block."
    q_g = _lrelu(conv1(h_r, scb + "channel_conv.body"))
    v_g = _lrelu(conv1(h_r, scb + "channel_conv.body"))
    k_g = conv1(x_g.reshape(B, -1, 1, 1), scb + "w_g").reshape(B, D)
    r_g = 1 / (1 + np.exp(-(q_g.reshape(B, D, -1).mean(-1) * k_g)))  # [B, D]
    c_g = r_g[:, :, None, None] * v_g
    e_g = c_g + _conv3_3(c_g, p, scb + "gcff.", training)
    # fusion and prediction
    e_f = _lrelu(conv1(np.concatenate([e_r, e_g], axis=1), "conv_1X1.body"))  # [B, R, S, S]
    e_f = e_f.transpose(0, 2, 3, 1).reshape(B, spa * spa, R)
    classifiers = vecs @ p["W.weight"].T + p["W.bias"]  # [L, R]
    m = e_f @ classifiers.T  # [B, P, L]
    return -np.sort(-m, axis=1)[:, :TOP].mean(axis=1)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_biam_equals_release_forward(training: bool) -> None:
    released = release_state()
    rng = np.random.default_rng(1)
    x = np.maximum(rng.normal(0, 1, (B, C, S, S)), 0)
    vecs = rng.normal(0, 1, (L, E))
    model = create_model(
        "biam",
        in_channels=C,
        embed_dim=E,
        channel_dim=D,
        region_dim=R,
        num_heads=HEADS,
        top_k=TOP,
        dropout=0.0,
        scene_dropout=0.0,
    ).double()
    model.load_state_dict(release_key_map(released), strict=True)
    model.train(training)
    params = {k: v.numpy() for k, v in released.items()}
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    ref = reference_forward(params, x, unit, x.mean(axis=(2, 3)), training)
    with torch.no_grad():
        ours = model(torch.from_numpy(x), torch.from_numpy(vecs)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=0.0, atol=1e-6)


def test_biam_release_key_map_is_idempotent_and_strips_module() -> None:
    mapped = release_key_map({f"module.{k}": v for k, v in release_state().items()})
    assert release_key_map(mapped).keys() == mapped.keys()
    assert mapped["fuse.weight"].shape == (R, 2 * D)
    assert mapped["scene_block.project.weight"].shape == (D, D, 1, 1)  # a Conv2d here too
