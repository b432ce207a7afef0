"""(ML)²P-Encoder as released: images in, released parameter names, released sizes."""

from __future__ import annotations

import inspect
import json
import re

import pytest
import torch
from torch import nn

from mlzsl.errors import ConfigError
from mlzsl.models import count_parameters, create_model, model_arguments
from mlzsl.models.ml2p_official import ML2POfficial, official_key_map
from mlzsl.training.losses import ranking_loss

torch.set_num_threads(1)

S, E, G, B, L = 64, 8, 2, 2, 5  # image 64 -> pool5 2×2, P = 4

# The released names of every non-trunk parameter and buffer at these sizes, read from
# simonzmliu/cvpr23_mlzsl models/Channel_MLZSL.py, MLP_Channel.py and Group_Attention.py
# (BasicConv, in the unpublished models/resnet.py, is taken to hold conv + bn as BasicMaxPooling).
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
RELEASED_HEAD_KEYS = {
    *(f"ft_module.{i}.conv.weight" for i in range(3)),
    *(f"ft_module.{i}.bn.{n}" for i in range(3) for n in _BN),
    "conv_embedding.weight",
    "conv_embedding.bias",
    "Channel_MLP.channel_attn.temperature",
    *(
        f"Channel_MLP.channel_attn.{m}.{n}"
        for m in ("qkv", "qkv_dwconv", "project_out")
        for n in ("weight", "bias")
    ),
    *(
        f"Channel_MLP.channel_mlp.{m}.{n}"
        for m in (
            "layer_norm_1",
            "layer_norm_2",
            "mlp_token.dense_1",
            "mlp_token.dense_2",
            "mlp_channel.dense_1",
            "mlp_channel.dense_2",
        )
        for n in ("weight", "bias")
    ),
    *(
        f"Group_Attention.{m}.{d}.{n}"
        for m in ("Linear1", "Linear2")
        for d in ("dense_1", "dense_2")
        for n in ("weight", "bias")
    ),
}

# Our names -> released names, written independently of official_key_map's table.
_TO_RELEASED = (
    (r"channel_mlp\.norm_token\.", "channel_mlp.layer_norm_1."),
    (r"channel_mlp\.norm_channel\.", "channel_mlp.layer_norm_2."),
    (r"(mlp_token|mlp_channel)\.0\.", r"\1.dense_1."),
    (r"(mlp_token|mlp_channel)\.2\.", r"\1.dense_2."),
    (r"Group_Attention\.query\.0\.", "Group_Attention.Linear1.dense_1."),
    (r"Group_Attention\.query\.2\.", "Group_Attention.Linear1.dense_2."),
    (r"Group_Attention\.key\.0\.", "Group_Attention.Linear2.dense_1."),
    (r"Group_Attention\.key\.2\.", "Group_Attention.Linear2.dense_2."),
)


def to_released(key: str) -> str:
    for pattern, replacement in _TO_RELEASED:
        key = re.sub(pattern, replacement, key)
    return key


def small(seed: int = 0, **extra: object) -> nn.Module:
    torch.manual_seed(seed)
    kwargs: dict[str, object] = dict(in_channels=3, embed_dim=E, image_size=S, groups=G)
    return create_model("ml2p_official", **{**kwargs, **extra})


def inputs(batch: int = B) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, S, S, generator=g), torch.randn(L, E, generator=g)


def test_shape_and_forward_is_score_of_embeddings() -> None:
    model = small().eval()
    images, labels = inputs()
    with torch.no_grad():
        embeddings = model.forward_embeddings(images)
        scores = model(images, labels)
    assert embeddings.shape == (B, G, E)
    assert scores.shape == (B, L)
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(model.score(embeddings, labels), scores)


def test_trains_end_to_end_by_default_and_project_out_stays_unused() -> None:
    model = small().train()
    images, labels = inputs()
    scores = model(images, labels)
    loss = ranking_loss(scores, torch.tensor([[1, -1, 0, 1, -1], [-1, 1, 1, 0, -1]]))
    (loss + scores.sum()).backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None}
    assert no_grad == {
        "Channel_MLP.channel_attn.project_out.weight",
        "Channel_MLP.channel_attn.project_out.bias",
    }
    assert model.vgg.features[0].weight.grad.abs().sum() > 0


def test_frozen_trunk_has_no_gradients_and_fixed_batch_norm() -> None:
    model = small(freeze_trunk=True).train()
    assert not any(p.requires_grad for p in model.vgg.parameters())
    assert not model.vgg.training and model.ft_module.training
    model(*inputs()).sum().backward()
    assert all(p.grad is None for p in model.vgg.parameters())
    assert model.conv_embedding.weight.grad is not None


def test_without_projection_and_label_normalisation_options() -> None:
    model = small(keep_unused_projection=False).eval()
    assert not hasattr(model.Channel_MLP.channel_attn, "project_out")
    raw = small(keep_unused_projection=False).eval()  # same seed, same weights
    l2 = small(keep_unused_projection=False, label_normalization="l2").eval()
    images, labels = inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            l2(images, labels), raw(images, labels / labels.norm(dim=1, keepdim=True))
        )


def test_released_state_dict_loads_strictly_with_identical_outputs() -> None:
    source = small(seed=0).eval()
    released = {to_released(k): v.clone() for k, v in source.state_dict().items()}
    head = {k for k in released if not k.startswith("vgg.features.")}
    assert head == RELEASED_HEAD_KEYS
    assert "vgg.features.49.weight" in released  # conv5_4 in torchvision's/the release's indices
    target = small(seed=1).eval()
    target.load_state_dict(official_key_map(released), strict=True)
    images, labels = inputs()
    with torch.no_grad():
        torch.testing.assert_close(target(images, labels), source(images, labels), rtol=0, atol=0)
    prefixed = official_key_map({f"module.{k}": v for k, v in released.items()})
    assert prefixed.keys() == source.state_dict().keys()


def test_in_channels_other_than_three_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="in_channels must be 3"):
        create_model("ml2p_official", in_channels=16, embed_dim=E, image_size=S)


@pytest.mark.parametrize(
    "extra", [dict(image_size=16), dict(groups=0), dict(label_normalization="cosine")]
)
def test_bad_arguments_raise_config_error(extra: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        small(**extra)


def test_wrong_image_or_label_size_raises_config_error() -> None:
    model = small().eval()
    images, labels = inputs()
    with pytest.raises(ConfigError, match="image_size"):
        model(torch.randn(1, 3, 2 * S, 2 * S), labels)
    with pytest.raises(ConfigError, match="embed_dim"):
        model(images, torch.randn(L, E + 1))


def test_parameter_counts_at_released_sizes() -> None:
    """Head 18,923,507 ≈ the paper's 18.9 M; the unused project_out adds 4,412,100."""
    model = create_model("ml2p_official", in_channels=3, embed_dim=300)  # S=224, G=7 -> P=49
    trunk = count_parameters(model.vgg)
    head = count_parameters(model) - trunk
    project_out = count_parameters(model.Channel_MLP.channel_attn.project_out)
    print(f"trunk {trunk:,}  head {head - project_out:,}  project_out {project_out:,}")
    assert trunk == 20_035_392
    assert count_parameters(model.ft_module) == 921_600
    assert project_out == 2100 * 2100 + 2100 == 4_412_100
    assert head - project_out == 18_923_507
    assert round((head - project_out) / 1e6, 1) == 18.9
    mixer = model.Channel_MLP.channel_mlp
    assert (mixer.mlp_token[0].out_features, mixer.mlp_channel[0].out_features) == (9, 60)


def test_builder_is_keyword_only_and_rejects_unknown_keywords() -> None:
    args = model_arguments("ml2p_official")
    assert args["in_channels"] is inspect.Parameter.empty
    assert args["embed_dim"] is inspect.Parameter.empty
    kinds = {p.kind for p in inspect.signature(ML2POfficial).parameters.values()}
    assert kinds == {inspect.Parameter.KEYWORD_ONLY}
    with pytest.raises(ConfigError, match="no_such_option"):
        small(no_such_option=3)


def test_zero_shot_invariants_and_config_rebuild() -> None:
    """What tests/test_models.py checks on feature maps, here on images."""
    model = small().eval()
    images, labels = inputs(batch=3)
    perm, subset = torch.tensor([3, 0, 4, 2, 1]), torch.tensor([4, 1])
    with torch.no_grad():
        scores = model(images, labels)
        torch.testing.assert_close(model(images, labels[perm]), scores[:, perm])
        torch.testing.assert_close(model(images, labels[subset]), scores[:, subset])
        alone = model(images[1:2], labels)
    torch.testing.assert_close(alone, scores[1:2], atol=1e-5, rtol=1e-5)
    assert scores.std(dim=0).max() > 0 and scores.std(dim=1).max() > 0
    json.dumps(model.config)
    rebuilt = create_model(model.model_name, **model.config).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images, labels), scores)
