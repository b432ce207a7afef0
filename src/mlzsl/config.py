"""Training configuration: one dataclass, one YAML loader, ``key=value`` overrides.

A config file is YAML holding a subset of :class:`TrainConfig`'s fields. Unknown keys and values
of the wrong type are rejected with a message naming the file and the key. Overrides use dotted
keys for the nested ``model_args`` mapping: ``lr=3e-4``, ``model_args.groups=4``.

``--config`` takes a file, or the name of a packaged config ``GROUP/MODEL`` (``nus_wide/lesa``,
``open_images/biam``; see :func:`list_packaged_configs`). Strings in ``embedder`` and
``model_args`` may name environment variables as ``${NAME}`` — the benchmark configs point at the
user's own label-vector and weight files that way (``embedder: nus:${MLZSL_NUS_VECTORS}``); an
unset variable is an error naming it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mlzsl.errors import ConfigError, DataError
from mlzsl.files import atomic_write, open_input


@dataclasses.dataclass
class TrainConfig:
    """Everything that decides a training run.

    Attributes:
        model: a registered model name.
        model_args: keyword arguments of the model builder (besides in_channels / embed_dim).
        embedder: label-vector embedder spec (``glove50``, ``minilm``, ``glove:PATH``, ...).
        loss: ``ranking`` (LESA/BiAM) or ``bce``.
        optimizer: ``adam``, ``adamw`` or ``rmsprop``.
        optimizer_args: extra keyword arguments of the torch optimizer (``betas``, ``momentum``,
            ``alpha``, ``eps``, ...), e.g. LESA's RMSProp momentum 0.9.
        lr: peak learning rate.
        lr_reference_dim: the label-vector size E the ``lr`` was tuned at; with larger vectors
            the run uses ``lr · lr_reference_dim / E`` (``None``: ``lr`` at any E). Adam moves
            every weight by about lr per step, so a layer whose fan-in grows with E moves its
            outputs ∝ E·lr (docs/models.md, ml2p, "Large E").
        weight_decay: L2 (adam, rmsprop) or decoupled (adamw) weight decay.
        batch_size: global batch size (split across ranks under torchrun).
        epochs: training epochs.
        warmup_epochs: linear warm-up length, in epochs (may be fractional).
        schedule: ``cosine`` (to 0 after warm-up) or ``constant``.
        seed: seeds the model initialisation and the data order.
        select_metric: ``zsl.mAP``-style key choosing the best checkpoint (higher is better).
        eval_every: evaluate every this many epochs (and always after the last).
        grad_clip: clip the gradient norm to this (0 disables).
        workers: DataLoader workers reading the store.
        ks: the K values of P/R/F1@K; ``None`` (default) takes the store's benchmark's: 10, 20
            on Open Images, else 3, 5 (NUS-WIDE, scenes, user data).
        amp: ``false`` (float32) or ``bf16``: the training forward pass under bfloat16 autocast
            (CPU or CUDA; no loss scaling, bf16 keeps float32's exponent range).
        backbone: the backbone ``mlzsl train --data`` extracts an image folder with (``None``:
            ``efficientnet_lite0``, as ``mlzsl extract``); a ``--store`` brings its own.
        image_size: the input side ``mlzsl train --data`` extracts at (``None``: the backbone's).
        label_prompt: a template with one ``{}`` each label name is put in before it is embedded,
            in training and in the checkpoint (taggers apply it too), or ``None``.
        teacher: a ready model (``photo``) whose knowledge the run transfers (MKT's idea: He et
            al., AAAI 2023): it must share the run's embedder, label prompt and backbone.
        distill_weight: weight of the distillation loss: the student's scores on the *seen*
            labels matched to the teacher's (per image, standardised over the labels).
        teacher_init_epochs: epochs of distillation alone before the supervised loss starts
            (initialisation from the teacher).
        fusion_weight: w of the checkpoint's scores, (1 − w)·student + w·teacher, each
            standardised by its mean and spread over the training images and seen labels;
            stored in the checkpoint, so ``tag``, ``serve`` and ``export`` carry it.
        adapter_weight: β of the seen-label adapter added to the fused scores (0: none): one
            logistic classifier per training label on the pooled maps, which only the labels the
            run was trained on reach (:class:`mlzsl.models._fusion.LabelAdapter`); needs
            ``fusion_weight`` > 0. Fitted once, on every training image's pooled maps: meant for
            photo folders of hundreds to thousands of images.
        adapter_c: the adapter's inverse L2 strength, scikit-learn's ``C`` (the loss summed over
            the training images plus ½‖w‖²/C).
    """

    model: str = "ml2p"
    model_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    embedder: str = "glove50"
    loss: str = "ranking"
    optimizer: str = "adam"
    optimizer_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    lr: float = 1e-3
    lr_reference_dim: int | None = None
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 20
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    seed: int = 0
    select_metric: str = "zsl.mAP"
    eval_every: int = 1
    grad_clip: float = 0.0
    workers: int = 0
    ks: list[int] | None = None
    amp: bool | str = False
    backbone: str | None = None
    image_size: int | None = None
    label_prompt: str | None = None
    teacher: str | None = None
    distill_weight: float = 0.0
    teacher_init_epochs: int = 0
    fusion_weight: float = 0.0
    adapter_weight: float = 0.0
    adapter_c: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML- and JSON-serialisable dict."""
        return dataclasses.asdict(self)


_CHOICES = {
    "loss": ("ranking", "bce"),
    "optimizer": ("adam", "adamw", "rmsprop"),
    "schedule": ("cosine", "constant"),
    "amp": (False, "bf16"),
}


def _check_type(name: str, value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` converted to the field's type, or raise ConfigError."""
    hint = typing.get_origin(annotation) or annotation
    if hint is list:
        (item,) = typing.get_args(annotation) or (object,)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {name} must be a list, got {value!r}")
        return [_check_type(f"{name}[{i}]", v, item, where) for i, v in enumerate(value)]
    if hint is object:
        return value
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {name} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is type(None) and value is None:
                return None
            if arg is not type(None):
                try:
                    return _check_type(name, value, arg, where)
                except ConfigError:
                    pass
    type_name = getattr(annotation, "__name__", str(annotation))
    raise ConfigError(f"{where}: {name} must be {type_name}, got {value!r}")


def _plain(value: Any) -> bool:
    """A scalar, or a list of scalars: what a model or optimizer argument may be."""
    scalar = (bool, int, float, str, type(None))
    return isinstance(value, scalar) or (
        isinstance(value, list) and all(isinstance(v, scalar) for v in value)
    )


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def config_from_dict(
    data: dict[str, Any], where: str = "config", origins: dict[str, str] | None = None
) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a mapping (unknown keys rejected).

    ``origins`` names where a key came from when not from ``where`` (a command-line override),
    keyed by ``key`` or ``model_args.KEY``; an error blames that origin.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of settings at the top level")
    origins = origins or {}
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise ConfigError(f"{where}: setting names must be words, got {odd[0]!r}")

    def at(name: str) -> str:
        return origins.get(name) or origins.get(name.split(".")[0]) or where

    types_ = _field_types()
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ConfigError(
            f"{at(unknown[0])}: unknown key {unknown[0]!r} (known: {', '.join(types_)})"
        )
    values = {k: _check_type(k, v, types_[k], at(k)) for k, v in data.items()}
    if "embedder" in values:
        values["embedder"] = _expand_env(values["embedder"], "embedder", at("embedder"))
    for key in ("model_args", "optimizer_args"):
        for name, value in values.get(key, {}).items():
            if not _plain(value):
                raise ConfigError(
                    f"{at(f'{key}.{name}')}: {key}.{name} must be a number, string, boolean or "
                    f"a list of them, got a nested {type(value).__name__}"
                )
    if "model_args" in values:
        values["model_args"] = {
            k: _expand_env(v, f"model_args.{k}", at(f"model_args.{k}"))
            for k, v in values["model_args"].items()
        }
    for key, allowed in _CHOICES.items():
        if key in values and values[key] not in allowed:
            raise ConfigError(f"{at(key)}: {key} must be one of {allowed}, got {values[key]!r}")
    config = TrainConfig(**values)
    for key in ("batch_size", "epochs", "eval_every", "lr_reference_dim"):
        if getattr(config, key) is not None and getattr(config, key) < 1:
            raise ConfigError(f"{at(key)}: {key} must be at least 1")
    floats = [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]
    if floats:
        raise ConfigError(
            f"{at(floats[0])}: {floats[0]} must be a finite number, got {values[floats[0]]}"
        )
    for key in ("weight_decay", "grad_clip"):
        if getattr(config, key) < 0:
            raise ConfigError(f"{at(key)}: {key} must be ≥ 0, got {getattr(config, key)}")
    if config.image_size is not None and config.image_size < 1:
        raise ConfigError(f"{at('image_size')}: image_size must be at least 1")
    for key, ok in (
        ("distill_weight", config.distill_weight >= 0),  # NaN fails
        ("teacher_init_epochs", config.teacher_init_epochs >= 0),
        ("fusion_weight", 0 <= config.fusion_weight <= 1),
        ("adapter_weight", config.adapter_weight >= 0),
        ("adapter_c", config.adapter_c > 0),
    ):
        if not ok:
            raise ConfigError(
                f"{at(key)}: distill_weight, teacher_init_epochs and adapter_weight must be ≥ 0, "
                f"fusion_weight between 0 and 1, adapter_c > 0"
            )
    if config.adapter_weight and not config.fusion_weight:
        raise ConfigError(
            f"{at('adapter_weight')}: the adapter is added to fused scores: set fusion_weight > 0 "
            "(or adapter_weight=0)"
        )
    if config.label_prompt is not None and config.label_prompt.count("{}") != 1:
        raise ConfigError(f"{at('label_prompt')}: label_prompt needs exactly one {{}}")
    for key, ok in (
        ("lr", config.lr > 0),  # NaN fails
        ("warmup_epochs", config.warmup_epochs >= 0),
        ("workers", config.workers >= 0),
    ):
        if not ok:
            raise ConfigError(f"{at(key)}: lr must be > 0, warmup_epochs and workers ≥ 0")
    return config


# YAML 1.1 (PyYAML) reads 3e-4 and 1E5 as strings: a float needs a dot there. Learning rates are
# written that way, so the loader also takes [-+]digits[.digits]e[-+]digits as a float.
_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping names one key twice (YAML would silently keep the last value)."""

    def __init__(self, key: str, first: yaml.Mark, again: yaml.Mark) -> None:
        super().__init__(problem=f"duplicated key {key!r}", problem_mark=again)
        self.key, self.first_line, self.line = key, first.line + 1, again.line + 1


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, plus floats in exponent notation without a dot, and a duplicated
    key in a mapping is an error instead of the last value silently winning."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[tuple[str, str], yaml.Mark] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                if ident in first:
                    raise _DuplicateKey(key_node.value, first[ident], key_node.start_mark)
                first[ident] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789"))


def _yaml_load(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: no Python objects are built
    except RecursionError:  # thousands of nested brackets
        raise yaml.YAMLError("nested too deeply") from None


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any, key: str, where: str) -> Any:
    """``value`` with each ``${NAME}`` replaced by the environment variable (strings only)."""
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(
                f"{where}: {key} uses ${{{name}}}, which is not set; export {name} "
                f"or override {key}=..."
            )
        return os.environ[name]

    return _ENV_REFERENCE.sub(lookup, value)


def _shown(text: str, limit: int = 60) -> str:
    """``text`` quoted for a one-line message, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model_args.groups=4"`` -> (["model_args", "groups"], 4); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {_shown(text)}: expected key=value")
    try:
        value = _yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"override {_shown(text)}: value is not valid YAML") from None
    return key.strip().split("."), value


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (or start from defaults) and apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = _resolve_config_path(path)
        where = str(path)
        try:
            with open_input(path, "r", what="config", encoding="utf-8") as f:
                loaded = _yaml_load(f.read())
        except DataError as e:  # missing, a folder, a FIFO: the same one line, as a config error
            raise ConfigError(str(e)) from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
        except _DuplicateKey as e:
            raise ConfigError(
                f"{path}:{e.line}: duplicated key {e.key!r} (first at line {e.first_line}); "
                "keep one"
            ) from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}{line}: malformed YAML") from None
        data = loaded if loaded is not None else {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    origins: dict[str, str] = {}  # key -> the override that set it, so errors blame it
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] in ("model_args", "optimizer_args") and len(keys) == 2:
            current = data.get(keys[0]) or {}
            if not isinstance(current, dict):
                blame = origins.get(keys[0], where)
                raise ConfigError(f"{blame}: {keys[0]} must be a mapping, got {current!r}")
            data[keys[0]] = {**current, keys[1]: value}
        elif len(keys) == 1:
            data[keys[0]] = value
            origins = {k: v for k, v in origins.items() if not k.startswith(f"{keys[0]}.")}
        else:
            raise ConfigError(
                f"override {_shown(text)}: only model_args.KEY and optimizer_args.KEY may be nested"
            )
        origins[".".join(keys)] = f"override {_shown(text)}"
    return config_from_dict(data, where, origins)


def packaged_config(group: str, model: str) -> Path:
    """Path of a config shipped in the package: ``("default", "lesa")`` is LESA's paper settings,
    ``("scenes", "ml2p")`` the built-in data's; the file may not exist."""
    return Path(str(resources.files("mlzsl") / "configs" / group / f"{model}.yaml"))


def list_packaged_configs() -> list[str]:
    """Names ``GROUP/MODEL`` of every config shipped in the package, sorted."""
    root = resources.files("mlzsl") / "configs"
    return sorted(
        f"{group.name}/{file.name.removesuffix('.yaml')}"
        for group in root.iterdir()
        if group.is_dir()
        for file in group.iterdir()
        if file.name.endswith(".yaml")
    )


def _resolve_config_path(path: str | Path) -> Path:
    """``path`` if it is a file, else the packaged config it names (``nus_wide/lesa``)."""
    path = Path(path)
    if path.is_file() or path.suffix or len(path.parts) != 2:
        return path
    packaged = packaged_config(*path.parts)
    if packaged.is_file():
        return packaged
    raise ConfigError(
        f"{path}: no such config file or packaged config "
        f"(packaged: {', '.join(list_packaged_configs())})"
    )


def model_default_config(model: str, overrides: Sequence[str] = ()) -> TrainConfig:
    """``model``'s paper settings (``configs/default``) with overrides; plain defaults if none."""
    path = packaged_config("default", model)
    return load_config(path if path.is_file() else None, [f"model={model}", *overrides])


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    with atomic_write(path, what="config") as f:
        f.write(yaml.safe_dump(config.to_dict(), sort_keys=False))
