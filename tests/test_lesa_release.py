"""`lesa` against a float64 numpy re-statement of the released TensorFlow graph (issue 14).

The reference below restates hbdat/cvpr20_LESA's ``core/model_share_attention.py`` graph
(``build_model_rank`` with ``is_conv=True``): 2×2 'SAME' conv + batch normalisation (epsilon
1e-3) + ReLU on NHWC maps, a constant 1 appended to every region, the attention MLP on the
release's [D+1, ·] variables, the classifiers W v̂ with a 0 appended, max over the T attentions,
the span, distribution and global terms and the ranking loss. Weights are random, in the release's
variable layout, and reach our model through ``release_key_map`` only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mlzsl.errors import ConfigError
from mlzsl.models import create_model
from mlzsl.models.lesa import (
    LESA,
    distribution_regularizer,
    global_regularizer,
    release_key_map,
    span_regularizer,
)
from mlzsl.training.losses import ranking_loss

torch.set_num_threads(1)

B, H, W, C, D, T, E = 4, 5, 4, 6, 7, 3, 5
L_SEEN, L_UNSEEN = 6, 4
LAMBDAS = {"lambda_span": 0.01, "lambda_dist": 0.1, "lambda_global": 0.001}
BN_EPS = 1e-3  # tf.layers.batch_normalization's default epsilon


def release_variables(seed: int = 0) -> dict[str, np.ndarray]:
    """Random float64 variables under the release's names and shapes."""
    rng = np.random.default_rng(seed)
    bn = "conv/conv/batch_normalization/"
    return {
        "conv/conv/weights:0": rng.normal(0, 0.3, (2, 2, C, D)),  # HWIO
        bn + "gamma:0": rng.uniform(0.5, 1.5, D),
        bn + "beta:0": rng.normal(0, 0.2, D),
        bn + "moving_mean:0": rng.normal(0, 0.2, D),
        bn + "moving_variance:0": rng.uniform(0.5, 2.0, D),
        "attention_layer/w_att_1:0": rng.normal(0, 0.4, (D + 1, D)),
        "attention_layer/w_att_2:0": rng.normal(0, 0.4, (D + 1, T)),
        "prediction_frac/W:0": rng.normal(0, 0.4, (D, E)),
        "vecs:0": rng.normal(0, 1, (L_SEEN, E)),  # skipped by the key map
    }


# -- the release's graph, restated in numpy (float64)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _l2_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_regions(v: dict[str, np.ndarray], nhwc: np.ndarray, training: bool) -> np.ndarray:
    """``_conv``: SAME 2×2 conv (extra row/column of zeros after), BN, ReLU -> [B, P, D]."""
    padded = np.pad(nhwc, ((0, 0), (0, 1), (0, 1), (0, 0)))
    kernel = v["conv/conv/weights"]  # [2, 2, C, D]
    out = np.zeros(nhwc.shape[:3] + (D,))
    for dy in range(2):
        for dx in range(2):
            out += padded[:, dy : dy + H, dx : dx + W, :] @ kernel[dy, dx]
    bn = "conv/conv/batch_normalization/"
    if training:  # batch statistics, biased variance
        mean, var = out.mean(axis=(0, 1, 2)), out.var(axis=(0, 1, 2))
    else:
        mean, var = v[bn + "moving_mean"], v[bn + "moving_variance"]
    out = (out - mean) / np.sqrt(var + BN_EPS) * v[bn + "gamma"] + v[bn + "beta"]
    return np.maximum(out, 0).reshape(B, H * W, D)


def reference_graph(
    v: dict[str, np.ndarray],
    nhwc: np.ndarray,
    seen: np.ndarray,
    unseen: np.ndarray,
    labels: np.ndarray,
    training: bool,
) -> dict[str, np.ndarray | float]:
    """Scores (seen, zero-shot, generalised), the three regularisers and the ranking loss."""
    regions = reference_regions(v, nhwc, training)
    ones = np.ones((B, H * W, 1))
    features_a = np.concatenate([regions, ones], axis=2)  # _augment_1: [B, P, D+1]
    hidden = np.tanh(features_a @ v["attention_layer/w_att_1"])  # [B, P, D]
    logit_maps = np.concatenate([hidden, ones], axis=2) @ v["attention_layer/w_att_2"]
    logit_maps = logit_maps.transpose(0, 2, 1)  # [B, T, P]
    alphas = _softmax(logit_maps, axis=2)
    f_att = np.einsum("btp,bpd->btd", alphas, features_a)  # [B, T, D+1]
    f_global = features_a.mean(axis=1)  # [B, D+1]

    def predict(vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        classifiers = (v["prediction_frac/W"] @ vecs.T).T  # [L, D]
        classifiers = np.concatenate([classifiers, np.zeros((len(vecs), 1))], axis=1)
        att_logits = np.einsum("btd,ld->btl", f_att, classifiers)  # [B, T, L]
        return att_logits.max(axis=1), att_logits, classifiers

    seen_n, unseen_n = _l2_rows(seen), _l2_rows(unseen)
    logits, att_logits, classifiers = predict(seen_n)
    zs_logits = predict(unseen_n)[0]
    gzs_logits = predict(np.concatenate([unseen_n, seen_n]))[0]

    # _attention_distribution_soft_cardinality
    share = _softmax(att_logits, axis=1) * np.clip(labels, 0, 1)[:, None, :]
    dist = float(np.mean(np.mean(np.square(share.sum(axis=2)), axis=1)))
    # _attention_ortho_span_regularizer
    unit = logit_maps / np.linalg.norm(logit_maps, axis=2, keepdims=True)
    gram = np.einsum("bip,bjp->bij", unit, unit)
    gram[:, np.arange(T), np.arange(T)] = 0
    span = float(np.sqrt(np.square(gram).sum()))
    # _attention_global_regularizer (margin 0)
    logits_global = f_global @ classifiers.T
    glob = float(np.maximum(-(logits - logits_global) * labels + 0.0, 0).sum())
    # _ranking_loss: annotated columns only
    keep = np.abs(labels).sum(axis=0) > 0
    sub_labels, sub_logits = labels[:, keep], logits[:, keep]
    pos, neg = np.clip(sub_labels, 0, 1), np.clip(-sub_labels, 0, 1)
    mask = pos[:, None, :] * neg[:, :, None]
    margin = 1 + (sub_logits * neg)[:, :, None] - (sub_logits * pos)[:, None, :]
    diff = np.maximum(mask * margin, 0)
    violation = np.sign(diff).sum(axis=(1, 2))
    rank = float(np.mean(diff.sum(axis=(1, 2)) / (violation + 1e-8)))
    total = (
        rank
        + LAMBDAS["lambda_dist"] * dist
        + LAMBDAS["lambda_global"] * glob
        + LAMBDAS["lambda_span"] * span
    )
    return {
        "logits": logits,
        "zs_logits": zs_logits,
        "gzs_logits": gzs_logits,
        "dist": dist,
        "span": span,
        "global": glob,
        "rank": rank,
        "loss": total,
    }


# -- the test


def inputs(seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    nhwc = np.maximum(rng.normal(0, 1, (B, H, W, C)), 0)
    seen = rng.normal(0, 1, (L_SEEN, E))
    unseen = rng.normal(0, 1, (L_UNSEEN, E))
    labels = rng.choice([-1.0, 0.0, 1.0], size=(B, L_SEEN))
    labels[:, 0], labels[:, 1] = 1.0, -1.0  # every image has a pair
    labels[:, 2] = 0.0  # one column annotated nowhere
    return nhwc, seen, unseen, labels


def our_model(variables: dict[str, np.ndarray]) -> LESA:
    model = create_model("lesa", in_channels=C, embed_dim=E, num_attentions=T, conv_channels=D)
    assert isinstance(model, LESA)
    model = model.double()
    model.load_state_dict(release_key_map(variables), strict=True)
    return model


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_lesa_equals_release_graph(training: bool) -> None:
    variables = release_variables()
    nhwc, seen, unseen, labels = inputs()
    ref = reference_graph(
        {k.removesuffix(":0"): a for k, a in variables.items()},
        nhwc,
        seen,
        unseen,
        labels,
        training,
    )
    model = our_model(variables).train(training)
    features = torch.from_numpy(nhwc.transpose(0, 3, 1, 2).copy())  # NCHW
    tol = {"rtol": 0.0, "atol": 1e-6}
    with torch.no_grad():
        embeddings = model.forward_embeddings(features)
        zs = model.score(embeddings, torch.from_numpy(unseen))
        gzs = model.score(embeddings, torch.from_numpy(np.concatenate([unseen, seen])))
        scores = model.score(embeddings, torch.from_numpy(seen))  # last: fills the loss cache
        np.testing.assert_allclose(zs.numpy(), ref["zs_logits"], **tol)
        np.testing.assert_allclose(gzs.numpy(), ref["gzs_logits"], **tol)
        np.testing.assert_allclose(scores.numpy(), ref["logits"], **tol)
        targets = torch.from_numpy(labels)
        rank = ranking_loss(scores, targets)
        assert rank.item() == pytest.approx(ref["rank"], abs=1e-6)
        if training:
            cache = model._cache
            span = span_regularizer(cache["logits"]).item()
            dist = distribution_regularizer(cache["attention_scores"], targets).item()
            glob = global_regularizer(cache["scores"], cache["global_scores"], targets).item()
            assert span == pytest.approx(ref["span"], abs=1e-6)
            assert dist == pytest.approx(ref["dist"], abs=1e-6)
            assert glob == pytest.approx(ref["global"], abs=1e-6)
            extra = model.extra_loss(targets)
            assert extra is not None
            assert (rank + extra).item() == pytest.approx(ref["loss"], abs=1e-6)


def test_lesa_release_batchnorm_and_initialisers() -> None:
    torch.manual_seed(0)
    model = create_model("lesa", in_channels=64, embed_dim=E)
    norm = model.attention.conv[2]
    assert (norm.eps, norm.momentum) == (1e-3, 0.01)  # TF epsilon 1e-3, decay 0.99
    conv = model.attention.conv[1].weight
    limit = (6.0 / (4 * 64 + 4 * 64)) ** 0.5  # Glorot-uniform, fans 4·C and 4·C'
    assert conv.abs().max() <= limit and conv.abs().max() > 0.9 * limit
    for layer in (model.attention.hidden, model.attention.logits):
        std = (2.6 / 65) ** 0.5  # variance scaling, fan_in C' + 1, truncated at 2 std
        assert layer.bias.abs().max() > 0  # drawn, not zero
        assert layer.weight.abs().max() <= 2 * std
    w_std = (2.6 / 64) ** 0.5
    assert model.W.weight.abs().max() <= 2 * w_std
    assert model.W.weight.std().item() == pytest.approx(w_std * 0.88, rel=0.15)  # truncation
    ours = create_model(
        "lesa", in_channels=64, embed_dim=E, init="he", bn_eps=1e-5, bn_momentum=0.1
    )
    assert ours.attention.hidden.bias.abs().max() == 0
    assert ours.attention.conv[2].eps == 1e-5


def test_release_key_map_without_conv_and_bad_init() -> None:
    variables = {
        k: a
        for k, a in release_variables().items()
        if k.startswith(("attention_layer", "prediction_frac"))
    }
    model = create_model("lesa", in_channels=D, embed_dim=E, num_attentions=T, use_conv=False)
    model.double().load_state_dict(release_key_map(variables), strict=True)
    with pytest.raises(ConfigError, match="init"):
        create_model("lesa", in_channels=D, embed_dim=E, init="xavier")


def test_attention_per_cluster_uses_the_released_trunk() -> None:
    torch.manual_seed(0)
    model = create_model("attention_per_cluster", in_channels=16, embed_dim=E, num_clusters=3)
    norm = model.attention.conv[2]
    assert (norm.eps, norm.momentum) == (1e-3, 0.01)
    assert model.attention.hidden.bias.abs().max() > 0  # release init: biases drawn
    earlier = create_model(
        "attention_per_cluster",
        in_channels=16,
        embed_dim=E,
        num_clusters=3,
        init="he",
        bn_eps=1e-5,
        bn_momentum=0.1,
    )
    assert earlier.attention.conv[2].eps == 1e-5
    assert earlier.attention.hidden.bias.abs().max() == 0
    with pytest.raises(ConfigError, match="init"):
        create_model("attention_per_cluster", in_channels=16, embed_dim=E, init="glorot")


def test_a_checkpoint_saved_before_the_release_settings_rebuilds_its_own_model(
    tmp_path: Path,
) -> None:
    from mlzsl.inference.checkpoint import load_checkpoint
    from tests.conftest import write_raw_checkpoint

    identity = {"name": "vgg19", "image_size": 224, "mean": [0.5] * 3, "std": [0.25] * 3}
    for name in ("lesa", "attention_per_cluster"):
        torch.manual_seed(0)
        model = create_model(
            name, in_channels=8, embed_dim=6, init="he", bn_eps=1e-5, bn_momentum=0.1
        )
        old_args = {
            k: v for k, v in model.config.items() if k not in ("init", "bn_eps", "bn_momentum")
        }
        fields = {
            "model": name,
            "embedder": "glove50",
            "vocabulary": {"names": ["a", "b"], "seen": [True, False]},
            "backbone": identity,
            "state_dict": model.state_dict(),
        }
        old = write_raw_checkpoint(tmp_path / "old.pt", {**fields, "model_args": old_args})
        rebuilt = load_checkpoint(old).build_model()
        assert {k: rebuilt.config[k] for k in ("init", "bn_eps", "bn_momentum")} == {
            "init": "he",
            "bn_eps": 1e-5,
            "bn_momentum": 0.1,
        }
        args = dict(model.config, bn_eps=1e-3)
        new = write_raw_checkpoint(tmp_path / "new.pt", {**fields, "model_args": args})
        fresh = load_checkpoint(new).build_model()
        assert fresh.config["bn_eps"] == 1e-3  # a key that is there is honoured
