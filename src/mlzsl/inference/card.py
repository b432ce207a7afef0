"""The model card of a checkpoint: what a model is, what it was trained on, how well it did.

:func:`model_card` reads only the fields of a :class:`mlzsl.inference.checkpoint.Checkpoint`, so
``mlzsl models --checkpoint``, the server's ``GET /api/model`` and ``mlzsl report`` show the same
card. Keys, every one always present (``None`` when the checkpoint does not say):

``name``, ``checkpoint`` (file name), ``model``, ``description`` (ready models), ``paper`` (the
``Paper:`` line of the method module's docstring), ``backbone`` (``name``, ``weights``,
``image_size``), ``preprocessing`` (``image_size``, ``resize``, ``mean``, ``std``), ``embedder``,
``label_prompt``, ``embed_dim``, ``vocabulary`` (``labels``, ``seen``, ``unseen``), ``store``
(``file``, ``dataset``, ``images`` {``train``, ``test``}), ``trained_on`` (one sentence),
``config`` (the training config; ``None`` for ready models), ``recipe`` (a ready model's
recipe; ``None`` for trained ones), ``epoch`` (the epoch the checkpoint was saved after: the best
one for ``best.pt``), ``metrics`` (primary convention, percent), ``metrics_by_convention``,
``fusion`` (``teacher``, ``weight``: the ready model the scores are fused with; with a seen-label
adapter also ``adapter_weight`` and ``adapter_labels``, the labels it scores), ``test_set``
(the line naming the test-set variant), ``weights`` (values in the state dict),
``mlzsl_version``.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlzsl.errors import ConfigError

if TYPE_CHECKING:
    from mlzsl.inference.checkpoint import Checkpoint

__all__ = ["card_text", "model_card", "model_paper"]


def model_paper(model: str) -> str | None:
    """The ``Paper:`` line of the module docstring of the registered model ``model``."""
    from mlzsl.models import _builder

    try:
        module = inspect.getmodule(_builder(model))
    except ConfigError:
        return None
    doc = (module.__doc__ if module else None) or ""
    found = re.search(r"Papers?: (.+?(?:19|20)\d\d(?: \(arXiv [\d.]+\))?)", doc, re.DOTALL)
    return " ".join(found.group(1).split()) if found else None


def model_card(
    ckpt: Checkpoint, *, path: str | Path | None = None, name: str | None = None
) -> dict[str, Any]:
    """The card of a loaded checkpoint (see the module docstring for its keys).

    Args:
        ckpt: a checkpoint as :func:`mlzsl.inference.checkpoint.load_checkpoint` returns it.
        path: the file it was read from (its name fills ``checkpoint``).
        name: what the user called it (a ready model's name, or the file name).
    """
    store, config, pre = ckpt.store, ckpt.config, ckpt.preprocess
    n_labels, n_seen = len(ckpt.vocabulary), ckpt.vocabulary.n_seen
    if ckpt.pretrained:
        trained_on = (
            f"nothing trained: the backbone's ImageNet-1k classifier ({n_labels:,} classes) "
            "combined over label vectors"
        )
    else:
        epochs = (config or {}).get("epochs")
        where = (store.dataset or store.file) if store else "a feature store"
        trained_on = (
            f"{where}: {n_labels:,} labels ({n_seen:,} seen in training, "
            f"{n_labels - n_seen:,} unseen)"
            + (f", {store.train_images:,} training images" if store and store.train_images else "")
            + (f", {epochs} epoch(s)" if isinstance(epochs, int) else "")
            + f", this one saved after epoch {ckpt.epoch}"
            + (f", {config['loss']} loss" if config and config.get("loss") else "")
        )
    file_name = Path(path).name if path is not None else None
    return {
        "name": name or file_name,
        "checkpoint": file_name,
        "model": ckpt.model,
        "description": ckpt.pretrained.get("description") if ckpt.pretrained else None,
        "paper": model_paper(ckpt.model),
        "backbone": {
            "name": ckpt.backbone.get("name"),
            "weights": ckpt.backbone.get("weights"),
            "image_size": pre.image_size,
        },
        "preprocessing": {
            "image_size": pre.image_size,
            "resize": pre.resize,
            "mean": list(pre.mean),
            "std": list(pre.std),
        },
        "embedder": ckpt.embedder,
        "label_prompt": ckpt.label_prompt,
        "embed_dim": ckpt.embed_dim,
        "vocabulary": {"labels": n_labels, "seen": n_seen, "unseen": n_labels - n_seen},
        "store": {
            "file": store.file,
            "dataset": store.dataset,
            "images": {"train": store.train_images, "test": store.test_images},
        }
        if store
        else None,
        "trained_on": trained_on,
        "config": config,
        "recipe": ckpt.pretrained,
        "epoch": ckpt.epoch,
        "metrics": ckpt.metrics,
        "metrics_by_convention": ckpt.metrics_by_convention,
        "fusion": _fusion(ckpt),
        "test_set": store.test_set if store else None,
        "weights": sum(int(v.numel()) for v in ckpt.state_dict.values() if hasattr(v, "numel")),
        "mlzsl_version": ckpt.mlzsl_version,
    }


def _fusion(ckpt: Checkpoint) -> dict[str, Any] | None:
    fusion = ckpt.fusion
    if fusion is None:
        return None
    out: dict[str, Any] = {"teacher": fusion.teacher, "weight": fusion.weight}
    if fusion.adapter is not None:
        out["adapter_weight"] = fusion.adapter_weight
        out["adapter_labels"] = int(fusion.adapter["vectors"].shape[0])
    return out


def _fusion_line(fusion: dict[str, Any] | None) -> str | None:
    if not fusion:
        return None
    line = f"{fusion['teacher']} (teacher weight {fusion['weight']:g})"
    if "adapter_weight" in fusion:
        line += (
            f", seen-label adapter on {fusion['adapter_labels']:,} labels "
            f"(weight {fusion['adapter_weight']:g})"
        )
    return line


def _numbers(values: Any) -> str:
    if not isinstance(values, (list, tuple)):
        return str(values)
    return "(" + ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values) + ")"


def card_text(card: dict[str, Any]) -> str:
    """The card as a few aligned lines (``mlzsl models --checkpoint``)."""
    backbone, pre = card["backbone"], card["preprocessing"]
    vocab = card["vocabulary"]
    lines = [
        ("model", card["model"] + (f" ({card['name']})" if card.get("name") else "")),
        ("paper", card["paper"]),
        ("description", card["description"]),
        ("backbone", f"{backbone['name']} ({backbone['weights']})"),
        (
            "preprocessing",
            f"{pre['image_size']} px, resize {pre['resize']}, "
            f"mean {_numbers(pre['mean'])}, std {_numbers(pre['std'])}",
        ),
        ("embedder", f"{card['embedder']} (E = {card['embed_dim']})"),
        ("label prompt", card["label_prompt"]),
        (
            "vocabulary",
            f"{vocab['labels']:,} labels: {vocab['seen']:,} seen, {vocab['unseen']:,} unseen",
        ),
        ("trained on", card["trained_on"]),
        ("fused with", _fusion_line(card.get("fusion"))),
        ("test set", card["test_set"]),
        ("weights", f"{card['weights']:,} values" if card["weights"] is not None else None),
        ("mlzsl", card["mlzsl_version"]),
    ]
    metrics = card.get("metrics")
    if isinstance(metrics, dict):
        for split in ("zsl", "gzsl"):
            values = metrics.get(split) or {}
            cells = ", ".join(
                f"{k} {v:.1f}" if isinstance(v, (int, float)) else f"{k} -"
                for k, v in values.items()
            )
            lines.append((f"{split.upper()} (epoch {card['epoch']})", cells))
    config = card.get("config")
    if isinstance(config, dict) and not card.get("description"):
        keys = ("loss", "optimizer", "lr", "batch_size", "epochs", "seed")
        lines.append(("config", ", ".join(f"{k} {config[k]}" for k in keys if k in config)))
    width = max(len(k) for k, v in lines if v is not None)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines if v is not None)
