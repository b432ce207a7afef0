"""The checkpoint record: one constructor, one reader that upgrades older files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from mlzsl.errors import DataError
from mlzsl.inference.card import model_card
from mlzsl.inference.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from tests.conftest import TINY_VOCABULARY, save_tiny_fast0tag, write_raw_checkpoint

BACKBONE = {"name": "efficientnet_lite0", "image_size": 64, "mean": [0.5] * 3, "std": [0.25] * 3}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_fast0tag(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _same(a: Checkpoint, b: Checkpoint) -> None:
    for f in dataclasses.fields(Checkpoint):
        if f.name != "state_dict":
            assert getattr(a, f.name) == getattr(b, f.name), f.name
    assert a.state_dict.keys() == b.state_dict.keys()
    for key, value in a.state_dict.items():
        torch.testing.assert_close(b.state_dict[key], value, rtol=0, atol=0)


def test_a_saved_checkpoint_reads_back_field_for_field(tiny: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(tiny)
    assert list(ckpt.vocabulary.names) == TINY_VOCABULARY and ckpt.vocabulary.n_seen == 4
    assert ckpt.preprocess.image_size == 64 and ckpt.preprocess.resize == "squash"
    assert ckpt.embed_dim == 50 and ckpt.store is None and ckpt.pretrained is None
    again = load_checkpoint(save_checkpoint(tmp_path / "again.pt", ckpt))
    _same(ckpt, again)
    assert [p.name for p in tmp_path.iterdir()] == ["again.pt"]  # no temporary file left


def _old_ready_model(tmp_path: Path) -> Path:
    """A ready model as mlzsl 0.1.0 wrote it before the record: its recipe inside ``config``,
    no ``resize``, no preprocessing keys of its own."""
    model = torch.nn.Linear(2, 2)
    return write_raw_checkpoint(
        tmp_path / "old.pt",
        {
            "model": "fast0tag",
            "model_args": {"in_channels": 1280, "embed_dim": 50},
            "embedder": "glove50",
            "vocabulary": {"names": ["dog", "cat"], "seen": [True, True]},
            "backbone": BACKBONE,
            "config": {"model": "fast0tag", "epochs": 0, "pretrained": {"name": "old"}},
            "state_dict": model.state_dict(),
        },
    )


def test_an_older_file_is_upgraded_by_the_reader(tmp_path: Path) -> None:
    ckpt = load_checkpoint(_old_ready_model(tmp_path))
    assert ckpt.pretrained == {"name": "old"} and ckpt.config is None
    assert ckpt.preprocess.resize == "squash" and ckpt.preprocess.image_size == 64
    assert ckpt.preprocess.mean == (0.5,) * 3 and ckpt.preprocess.std == (0.25,) * 3
    assert ckpt.epoch == 0 and ckpt.metrics is None and ckpt.ks is None
    card = model_card(ckpt, path=tmp_path / "old.pt")
    assert card["recipe"] == {"name": "old"} and card["config"] is None
    assert card["trained_on"].startswith("nothing trained")


def _fusion_record(**adapter: object) -> dict[str, object]:
    """A fusion record whose seen-label adapter (2 labels, 4 channels) has ``adapter``'s entries
    instead (``None``: the entry missing)."""
    tensors: dict[str, object] = {
        "vectors": torch.ones(2, 50),
        "weight": torch.zeros(2, 4),
        "bias": torch.zeros(2),
        "feature_stats": torch.ones(2, 4),
        "score_stats": torch.tensor([0.0, 1.0]),
    }
    tensors.update(adapter)
    return {
        "weight": 0.5,
        "student_stats": [0.0, 1.0],
        "teacher_stats": [0.0, 1.0],
        "teacher": "photo",
        "teacher_model": "imagenet_conse",
        "teacher_args": {},
        "teacher_state": {},
        "adapter_weight": 0.5,
        "adapter": {key: value for key, value in tensors.items() if value is not None},
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"backbone": {"name": "x"}}, "names no image_size, mean, std"),
        ({"vocabulary": {"names": ["a"], "seen": []}}, "one length"),
        ({"metrics": [1, 2]}, "field metrics must be a dict"),
        ({"image_size": "big"}, "preprocessing is malformed"),
        ({"fusion": _fusion_record(bias=torch.zeros(3))}, "field fusion is malformed"),
        ({"fusion": _fusion_record(bias=None)}, "field fusion is malformed"),
        ({"fusion": _fusion_record(weight=[[0.0] * 4] * 2)}, "field fusion is malformed"),
    ],
)
def test_a_malformed_field_is_one_line_naming_the_file(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    fields = {
        "model": "fast0tag",
        "model_args": {"in_channels": 4, "embed_dim": 50},
        "embedder": "glove50",
        "vocabulary": {"names": ["a"], "seen": [True]},
        "backbone": BACKBONE,
        "state_dict": {},
    }
    path = write_raw_checkpoint(tmp_path / "bad.pt", {**fields, **change})
    with pytest.raises(DataError, match=message) as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)
