"""The base class of every model: its config captured once, the shared ``forward``, input checks."""

from __future__ import annotations

import functools
import inspect
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from mlzsl.errors import ConfigError

__all__ = ["MLZSLModel"]


class MLZSLModel(nn.Module, ABC):
    """A zero-shot tagger: ``forward(f, v) == score(forward_embeddings(f), v)``.

    A subclass states its keyword-only arguments once, in ``__init__``. The arguments of each
    construction, defaults filled in and ``float``-typed values as floats, become ``self.config``,
    so ``create_model(model.model_name, **model.config)`` rebuilds the model; registering the class
    with ``@register_model(name)`` sets ``model_name``.

    Every model takes ``in_channels`` (C, channels of the feature map) and ``embed_dim`` (E, the
    label-vector size); they are checked positive before the subclass ``__init__`` runs and read
    back from the config.
    """

    model_name: ClassVar[str] = ""
    config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in vars(cls):
            cls.__init__ = _capturing_config(vars(cls)["__init__"])  # type: ignore[method-assign]

    @property
    def in_channels(self) -> int:
        """C, the channels of the input (3 for image models)."""
        return int(self.config["in_channels"])

    @property
    def embed_dim(self) -> int:
        """E, the label-vector size."""
        return int(self.config["embed_dim"])

    def forward(self, features: Tensor, label_vectors: Tensor) -> Tensor:
        """Score every label for every image.

        Args:
            features: [B, C, H, W] feature maps (image models: [B, 3, S, S] normalised images).
            label_vectors: [L, E] label vectors.

        Returns:
            [B, L] scores; higher ranks a label higher.
        """
        return self.score(self.forward_embeddings(features), label_vectors)

    @abstractmethod
    def forward_embeddings(self, features: Tensor) -> Tensor:
        """The label-independent part of :meth:`forward`: a tensor with B first."""

    @abstractmethod
    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Scores [B, L] from :meth:`forward_embeddings`' output and label vectors [L, E]."""

    def extra_loss(self, targets: Tensor) -> Tensor | None:
        """The model's auxiliary loss for the last training forward, which the trainer adds to
        the main loss; ``None`` (the default) when there is none.

        A model with regularisers of its own (LESA's attention terms, SDL's diversity term,
        CONSE's classifier loss) overrides this; it returns ``None`` in eval mode.

        Args:
            targets: the batch's targets over the labels of the last forward (the seen ones),
                [B, L_seen] in {+1, -1, 0} (0 = not annotated; the store's int8 rows, as the
                trainer passes them). A model whose auxiliary loss does not need them ignores
                them.
        """
        return None

    # -- input checks (one-line ConfigError naming the model and the shape)

    def check_features(self, features: Tensor) -> None:
        """Raise :class:`ConfigError` unless ``features`` is [B, in_channels, H, W]."""
        if features.ndim != 4 or features.shape[1] != self.in_channels:
            raise ConfigError(
                f"{self.model_name} was built for feature maps of {self.in_channels} channels; "
                f"got features of shape {tuple(features.shape)}"
            )

    def check_labels(self, label_vectors: Tensor) -> None:
        """Raise :class:`ConfigError` unless ``label_vectors`` is [L, embed_dim]."""
        if label_vectors.ndim != 2 or label_vectors.shape[1] != self.embed_dim:
            raise ConfigError(
                f"{self.model_name} was built for label vectors of size embed_dim="
                f"{self.embed_dim}; got label vectors of shape {tuple(label_vectors.shape)}"
            )

    # -- argument checks for __init__ (one-line ConfigError naming the model and the argument)

    def check_positive(self, **sizes: int) -> None:
        """Raise :class:`ConfigError` unless every size is an integer >= 1."""
        for key, value in sizes.items():
            if value < 1:
                raise ConfigError(
                    f"{self.model_name}: {key} must be a positive integer, got {value}"
                )

    def check_non_negative(self, **values: float) -> None:
        """Raise :class:`ConfigError` unless every value is >= 0 (hidden widths, loss weights)."""
        for key, value in values.items():
            if value < 0:
                raise ConfigError(f"{self.model_name}: {key} must be >= 0, got {value}")

    def check_probability(self, **values: float) -> None:
        """Raise :class:`ConfigError` unless every value is in [0, 1) (dropout rates)."""
        for key, value in values.items():
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{self.model_name}: {key} must be in [0, 1), got {value}")

    def check_choice(self, key: str, value: str, choices: Sequence[str]) -> None:
        """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
        if value not in choices:
            raise ConfigError(
                f"{self.model_name}: {key} must be one of {', '.join(choices)}, got {value!r}"
            )


def _capturing_config(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a model's ``__init__`` so that the keywords of each call become ``self.config``."""
    signature = inspect.signature(init)
    if any(p.kind is not p.KEYWORD_ONLY for p in list(signature.parameters.values())[1:]):
        raise TypeError(f"{init.__qualname__}: model arguments must be keyword-only")

    @functools.wraps(init)
    def init_and_capture(self: MLZSLModel, **kwargs: Any) -> None:
        bound = signature.bind(self, **kwargs)
        bound.apply_defaults()
        sizes = {k: v for k, v in bound.arguments.items() if k in ("in_channels", "embed_dim")}
        self.check_positive(**sizes)
        floats = _float_arguments(init)
        arguments = list(bound.arguments.items())[1:]  # without self
        self.config = {k: float(v) if k in floats else v for k, v in arguments}  # __init__ reads it
        init(self, **kwargs)

    return init_and_capture


@functools.cache
def _float_arguments(init: Callable[..., None]) -> frozenset[str]:
    """The arguments of ``init`` typed ``float`` (resolved at first use: hints are strings)."""
    return frozenset(k for k, hint in typing.get_type_hints(init).items() if hint is float)
