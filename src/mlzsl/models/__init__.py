"""Model registry: every MLZSL method as a registered model class, timm-style.

Every model shares one interface::

    model(features: Tensor[B, C, H, W], label_vectors: Tensor[L, E]) -> scores: Tensor[B, L]

The label set is an input, never a fixed output layer, so seen, unseen and user-chosen labels all
go through the same call. Each model is a :class:`~mlzsl.models._base.MLZSLModel` subclass
registered with ``@register_model(name)``; its ``__init__`` takes keyword-only typed arguments,
which are the builder's. ``in_channels`` (C) and ``embed_dim`` (E, the label-vector size) are
required by every model, so engine code can call
``create_model(name, in_channels=C, embed_dim=E, **model_kwargs)``. Models whose layers depend on
the size of the feature map (``ml2p``'s token-mixing MLP) also take ``num_positions`` (P = H·W);
:func:`model_arguments` tells which keywords a model accepts.

Every model instance carries:

* ``model_name``: the registry name it is built under;
* ``config``: a ``dict`` of its constructor keywords, so
  ``create_model(model.model_name, **model.config)`` rebuilds an identical architecture
  (the checkpoint format stores these two next to the state dict);
* ``forward_embeddings(features) -> Tensor``: the label-independent part, a tensor with B first
  (for ``ml2p`` and ``fast0tag`` the K scoring vectors [B, K, E], K = G or 1), and
  ``score(embeddings, label_vectors) -> Tensor[B, L]``, with
  ``forward(f, v) == score(forward_embeddings(f), v)``: a tagger embeds images once and scores
  any number of label sets;
* ``extra_loss(targets) -> Tensor | None``: an auxiliary loss of the last training forward
  (LESA's attention regularisers, SDL's diversity term, CONSE's classifier loss) that the trainer
  adds to the main loss, given the batch's targets [B, L_seen]; :class:`MLZSLModel`'s returns
  ``None`` (no auxiliary loss).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from mlzsl.errors import ConfigError
from mlzsl.models._base import MLZSLModel

__all__ = [
    "MLZSLModel",
    "count_parameters",
    "create_model",
    "list_models",
    "model_arguments",
    "model_inputs",
    "model_trainable",
    "register_model",
]

_Model = TypeVar("_Model", bound=type[MLZSLModel])
_MODELS: dict[str, type[MLZSLModel]] = {}
_INPUTS: dict[str, str] = {}
_READY: set[str] = set()  # registered with trainable=False


INPUTS = ("features", "images")


def register_model(
    name: str, *, inputs: str = "features", trainable: bool = True
) -> Callable[[_Model], _Model]:
    """Decorator registering a model class, an :class:`MLZSLModel` subclass, under ``name``.

    The class gets ``model_name = name``; its ``__init__`` signature is the builder's.

    Args:
        name: the registry name (``create_model(name, ...)``); must be new.
        inputs: ``"features"`` for models over stored feature maps [B, C, H, W] (all but the
            end-to-end variants), ``"images"`` for models that take normalised images
            [B, 3, S, S] and run their own backbone.
        trainable: ``False`` for a ready model whose weights come from elsewhere (the real-photo
            ``imagenet_conse``): ``mlzsl train`` refuses it and it has no training configs.

    Raises:
        ValueError: ``name`` is already registered (a programming error, not a user one).
        TypeError: what is decorated is not an :class:`MLZSLModel` subclass.
    """
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")

    def decorate(cls: _Model) -> _Model:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        if not (isinstance(cls, type) and issubclass(cls, MLZSLModel)):
            raise TypeError(f"model {name!r}: register an MLZSLModel subclass, got {cls!r}")
        cls.model_name = name
        _MODELS[name] = cls
        _INPUTS[name] = inputs
        if not trainable:
            _READY.add(name)
        return cls

    return decorate


def list_models(inputs: str | None = None, *, trainable: bool | None = None) -> list[str]:
    """Registered model names, sorted.

    ``inputs`` keeps only "features" or "images" models; ``trainable`` only the models
    ``mlzsl train`` trains (``True``) or the ready ones (``False``).
    """
    return sorted(
        n
        for n in _MODELS
        if (inputs is None or _INPUTS[n] == inputs)
        and (trainable is None or (n not in _READY) == trainable)
    )


def model_trainable(name: str) -> bool:
    """Whether ``mlzsl train`` trains the model ``name`` (ready models are built, not trained)."""
    _builder(name)
    return name not in _READY


def model_inputs(name: str) -> str:
    """``"features"`` or ``"images"``: what the model ``name`` takes as its first argument."""
    _builder(name)
    return _INPUTS[name]


def _builder(name: str) -> type[MLZSLModel]:
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name]


def model_arguments(name: str) -> dict[str, Any]:
    """The keywords the builder ``name`` accepts, each with its default.

    Required keywords map to :data:`inspect.Parameter.empty`.

    Raises:
        ConfigError: ``name`` is not a registered model.
    """
    params = inspect.signature(_builder(name)).parameters
    return {key: p.default for key, p in params.items()}


def create_model(name: str, **kwargs: Any) -> MLZSLModel:
    """Build the registered model ``name`` from keyword arguments.

    Args:
        name: a name from :func:`list_models`.
        **kwargs: the builder's keywords; at least ``in_channels`` and ``embed_dim``.

    Returns:
        The model, with ``model_name`` and ``config`` attributes (see the module docstring).

    Raises:
        ConfigError: unknown model name, unknown or missing keyword, or a value of the wrong type
            or out of range; the message names the model and the keyword.
    """
    builder = _builder(name)
    accepted = model_arguments(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no argument(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted)}"
        )
    missing = [k for k, d in accepted.items() if d is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise ConfigError(f"model {name!r} needs argument(s) {', '.join(missing)}")
    params = inspect.signature(builder, eval_str=True).parameters  # a class: its __init__'s
    hints = {k: p.annotation for k, p in params.items() if p.annotation is not p.empty}
    for key, value in kwargs.items():
        if key in hints and not _matches(value, hints[key]):
            raise ConfigError(
                f"model {name!r}: argument {key} must be {_type_name(hints[key])}, "
                f"got {value!r} ({type(value).__name__})"
            )
    return builder(**kwargs)


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits a simple type hint (int, float, bool, str, unions, None)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:  # bool is an int subclass, but `groups=True` is a mistake
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint we do not check here; the model checks the value where it uses it


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``model`` (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _import_methods() -> None:
    """Import every public module of this package: their @register_model decorators run."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_methods()
