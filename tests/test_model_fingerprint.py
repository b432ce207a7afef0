"""Every model's seeded weights, scores and auxiliary loss against values recorded before a
refactor: a change that moves any of them is a change of behaviour, not a clean-up.

``tests/model_fingerprints.json`` was written by :func:`fingerprint` at commit b44acc9 (before
issue 22's record, contract and trunk clean-up) and is checked to 1e-4 (BLAS builds differ in the
last digits). Regenerate it, from :func:`fingerprint` of every name, only for a change meant to
alter a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from mlzsl.models import create_model, list_models

B, C, H, W, E, L = 3, 16, 4, 4, 12, 5
SMALL_KWARGS: dict[str, dict[str, object]] = {"ml2p": {"groups": 3, "num_positions": H * W}}
RECORDED = json.loads((Path(__file__).parent / "model_fingerprints.json").read_text())


def fingerprint(name: str) -> dict[str, Any]:
    """Sum of the seeded initial weights, train- and eval-mode scores and ``extra_loss``."""
    torch.manual_seed(0)
    model = create_model(name, in_channels=C, embed_dim=E, **SMALL_KWARGS.get(name, {}))
    g = torch.Generator().manual_seed(1)
    features = torch.randn(B, C, H, W, generator=g).relu()
    vectors = torch.randn(L, E, generator=g)
    targets = (torch.rand(B, L, generator=g) > 0.5).float() * 2 - 1
    params = float(sum(p.detach().double().sum() for p in model.parameters()))
    model.train()
    train = model(features, vectors)
    extra = model.extra_loss(targets)
    model.eval()
    with torch.no_grad():
        scores = model(features, vectors)
    return {
        "params": params,
        "train": train.detach().flatten().tolist(),
        "eval": scores.flatten().tolist(),
        "extra": None if extra is None else float(extra.detach()),
    }


def test_every_feature_model_is_recorded() -> None:
    assert set(RECORDED) == set(list_models(inputs="features"))


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_the_model_computes_what_it_computed_before(name: str) -> None:
    got, recorded = fingerprint(name), RECORDED[name]
    assert got["params"] == pytest.approx(recorded["params"], rel=1e-6, abs=1e-6)
    for key in ("train", "eval"):
        assert got[key] == pytest.approx(recorded[key], rel=1e-4, abs=1e-5), key
    if recorded["extra"] is None:
        assert got["extra"] is None
    else:
        assert got["extra"] == pytest.approx(recorded["extra"], rel=1e-4)
