"""Conformance suite: every registered model honours the shared zero-shot interface.

Each test is parametrised over ``list_models()``, so a newly registered method is checked
without editing this file; a method that needs special small sizes adds them to ``SMALL_KWARGS``.
"""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from mlzsl.errors import ConfigError
from mlzsl.models import (
    MLZSLModel,
    count_parameters,
    create_model,
    list_models,
    model_arguments,
)
from mlzsl.training.losses import ranking_loss

torch.set_num_threads(1)

B, C, H, W, E, L = 3, 16, 4, 4, 12, 5
# extra builder keywords a model needs at these small sizes (default: none)
SMALL_KWARGS: dict[str, dict[str, object]] = {"ml2p": {"groups": 3, "num_positions": H * W}}

# models over feature maps; image-input models (ml2p_official) are checked on images in their
# own test file
MODELS = list_models(inputs="features")


def build(name: str, **extra: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, in_channels=C, embed_dim=E, **{**SMALL_KWARGS.get(name, {}), **extra})


def inputs(batch: int = B, labels: int = L, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, C, H, W, generator=g).relu()  # post-ReLU, like backbone maps
    return features, torch.randn(labels, E, generator=g)


def test_registry_holds_the_first_methods() -> None:
    assert {"ml2p", "fast0tag"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_builder_requires_sizes_and_is_keyword_only(name: str) -> None:
    args = model_arguments(name)
    assert args["in_channels"] is inspect.Parameter.empty
    assert args["embed_dim"] is inspect.Parameter.empty
    from mlzsl.models import _MODELS

    kinds = {p.kind for p in inspect.signature(_MODELS[name]).parameters.values()}
    assert kinds == {inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_and_finite(name: str) -> None:
    model = build(name).eval()
    features, labels = inputs()
    scores = model(features, labels)
    assert scores.shape == (B, L)
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("name", MODELS)
def test_scores_not_degenerate_at_init(name: str) -> None:
    model = build(name).eval()
    features, labels = inputs(batch=4, labels=6)
    with torch.no_grad():
        scores = model(features, labels)
    assert scores.std(dim=0).max() > 0  # depends on the image
    assert scores.std(dim=1).max() > 0  # depends on the label


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_finite_gradient(name: str) -> None:
    model = build(name).train()
    features, labels = inputs()
    scores = model(features, labels)
    targets = torch.tensor([[1, -1, 0, 1, -1], [-1, 1, 1, 0, -1], [1, 1, -1, -1, -1]])
    weights = torch.randn(scores.shape, generator=torch.Generator().manual_seed(2))
    loss = ranking_loss(scores, targets) + (scores * weights).sum()
    extra = model.extra_loss(targets)
    if extra is not None:
        loss = loss + extra
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}: {pname} has a non-finite gradient"


@pytest.mark.parametrize("name", MODELS)
def test_forward_is_score_of_embeddings(name: str) -> None:
    model = build(name).eval()
    features, labels = inputs()
    with torch.no_grad():
        embeddings = model.forward_embeddings(features)
        assert embeddings.shape[0] == B
        torch.testing.assert_close(model.score(embeddings, labels), model(features, labels))


@pytest.mark.parametrize("name", MODELS)
def test_permuting_labels_permutes_score_columns(name: str) -> None:
    model = build(name).eval()
    features, labels = inputs()
    perm = torch.tensor([3, 0, 4, 2, 1])
    with torch.no_grad():
        torch.testing.assert_close(model(features, labels[perm]), model(features, labels)[:, perm])


@pytest.mark.parametrize("name", MODELS)
def test_scoring_a_subset_equals_slicing(name: str) -> None:
    model = build(name).eval()
    features, labels = inputs()
    subset = torch.tensor([4, 1])
    with torch.no_grad():
        torch.testing.assert_close(
            model(features, labels[subset]), model(features, labels)[:, subset]
        )
        one = model(features, labels[2:3])
    assert one.shape == (B, 1)


@pytest.mark.parametrize("name", MODELS)
def test_eval_scores_independent_of_batch(name: str) -> None:
    model = build(name).eval()
    features, labels = inputs(batch=5)
    with torch.no_grad():
        together = model(features, labels)
        for i in range(5):
            alone = model(features[i : i + 1], labels)
            torch.testing.assert_close(alone, together[i : i + 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_unknown_keyword_raises_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="no_such_option"):
        build(name, no_such_option=3)


@pytest.mark.parametrize("name", MODELS)
def test_wrong_type_or_missing_size_raises_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="in_channels"):
        create_model(name, in_channels="16", embed_dim=E)
    with pytest.raises(ConfigError, match="embed_dim"):
        create_model(name, in_channels=C)


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(ConfigError) as err:
        create_model("no_such_model", in_channels=C, embed_dim=E)
    for name in MODELS:
        assert name in str(err.value)


@pytest.mark.parametrize("name", MODELS)
def test_wrong_feature_channels_raise_config_error(name: str) -> None:
    model = build(name).eval()
    _, labels = inputs()
    with pytest.raises(ConfigError, match="channels"):
        model(torch.randn(B, C + 1, H, W), labels)
    with pytest.raises(ConfigError, match="embed_dim"):
        model(inputs()[0], torch.randn(L, E + 1))


@pytest.mark.parametrize("name", MODELS)
def test_config_rebuilds_an_identical_model(name: str) -> None:
    model = build(name).eval()
    assert model.model_name == name
    json.dumps(model.config)  # plain values only, so a checkpoint can store it
    rebuilt = create_model(model.model_name, **model.config).eval()
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    assert count_parameters(rebuilt) == count_parameters(model)
    rebuilt.load_state_dict(model.state_dict())
    features, labels = inputs()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(features, labels), model(features, labels))


@pytest.mark.parametrize("name", MODELS)
def test_extra_loss_is_the_base_contract(name: str) -> None:
    model = build(name)
    assert isinstance(model, MLZSLModel)
    # one signature, the base class's: extra_loss(targets)
    signature = inspect.signature(type(model).extra_loss)
    assert signature == inspect.signature(MLZSLModel.extra_loss), f"{name}: {signature}"
    # what the trainer adds after a training forward: nothing (the base's None) or a finite
    # scalar that trains the model; never anything in eval mode
    targets = torch.tensor([[1, -1, 0, 1, -1], [-1, 1, 1, 0, -1], [1, 1, -1, -1, -1]])
    model.train()(*inputs())
    added = model.extra_loss(targets)
    if added is not None:
        assert added.ndim == 0 and torch.isfinite(added) and added.requires_grad
    model.eval()(*inputs())
    assert model.extra_loss(targets) is None
