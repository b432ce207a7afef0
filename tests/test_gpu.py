"""CUDA against the CPU, and bfloat16 mixed-precision training (``amp: bf16``).

Tests marked ``gpu`` need CUDA and skip without it, saying so; ``benchmarks/gpu_check.sh`` runs
them (``pytest -m gpu``) on a GPU machine. The unmarked bf16 tests run on the CPU everywhere:
CPU autocast supports bfloat16 too.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mlzsl.cli import main
from mlzsl.config import load_config
from mlzsl.errors import ConfigError
from mlzsl.inference.checkpoint import load_checkpoint, save_checkpoint
from mlzsl.models import create_model
from mlzsl.training.engine import autocast, make_optimizer
from mlzsl.training.losses import ranking_loss

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(
    not CUDA, reason="no CUDA device: torch.cuda.is_available() is False"
)

# a small NUS-like map: B images, C channels, H×W positions, E-d label vectors, L labels
B, C, H, W, E, L = 4, 64, 7, 7, 32, 10
MODELS = ["ml2p", "biam", "lesa", "fast0tag"]
SIZES: dict[str, dict[str, object]] = {"ml2p": {"groups": 3, "num_positions": H * W}}


def _build(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, in_channels=C, embed_dim=E, **SIZES.get(name, {}))


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """features [B, C, H, W] (post-ReLU), label vectors [L, E], targets ±1 [B, L]."""
    g = torch.Generator().manual_seed(1)
    features = torch.randn(B, C, H, W, generator=g).relu()
    vectors = torch.randn(L, E, generator=g)
    targets = torch.randint(0, 2, (B, L), generator=g) * 2 - 1
    return features, vectors, targets


def _loss(model: nn.Module, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The trainer's loss: ranking loss on float32 scores plus the model's own term."""
    loss = ranking_loss(scores.float(), targets)
    extra = model.extra_loss(targets)
    return loss if extra is None else loss + extra


def _forward_backward(
    model: nn.Module, device: str
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Scores [B, L] and every parameter's gradient, on the CPU, after one pass on ``device``."""
    features, vectors, targets = (t.to(device) for t in _batch())
    model.to(device).eval()  # eval: no dropout draws, so both devices compute the same function
    scores = model(features, vectors)
    weights = torch.linspace(-1, 1, B * L, device=device).view(B, L)  # every score matters
    (_loss(model, scores, targets) + (scores * weights).sum()).backward()
    grads = {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}
    return scores.detach().cpu(), grads


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", MODELS)
def test_cuda_forward_backward_equals_cpu(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # TF32 (on by default for cuDNN convolutions) rounds inputs to 10 bits: far above 1e-4
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cpu_scores, cpu_grads = _forward_backward(_build(name), "cpu")
    cuda_scores, cuda_grads = _forward_backward(_build(name), "cuda")
    torch.testing.assert_close(cuda_scores, cpu_scores, atol=1e-4, rtol=1e-4)
    assert cuda_grads.keys() == cpu_grads.keys() and cpu_grads
    for key, grad in cpu_grads.items():
        torch.testing.assert_close(cuda_grads[key], grad, atol=1e-4, rtol=1e-4, msg=key)


def _bf16_step(name: str, device: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One trainer step under ``amp: bf16``: (float32 scores, bf16-autocast scores, loss)."""
    config = load_config(None, [f"model={name}", "amp=bf16", "lr=1e-3"])
    model = _build(name).to(device).train()
    features, vectors, targets = (t.to(device) for t in _batch())
    with torch.no_grad():
        plain = model.eval()(features, vectors).float()
    model.train()
    with autocast(config, torch.device(device)):
        scores = model(features, vectors)
    loss = _loss(model, scores, targets)
    optimizer = make_optimizer(config, model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{name}: {pname} got no gradient"
        assert param.grad.dtype == torch.float32, pname  # weights and grads stay float32
        assert torch.isfinite(param.grad).all(), f"{name}: {pname} has a non-finite gradient"
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    return plain, scores.detach().float(), float(loss.detach())


@pytest.mark.parametrize("name", MODELS)
def test_bf16_training_step_on_cpu_is_finite(name: str) -> None:
    plain, mixed, loss = _bf16_step(name, "cpu")
    assert math.isfinite(loss)
    assert torch.isfinite(mixed).all()
    # autocast was on (bf16 keeps 8 mantissa bits): the scores moved off float32's
    assert not torch.equal(plain, mixed)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", MODELS)
def test_bf16_training_step_on_cuda_is_finite(name: str) -> None:
    _, mixed, loss = _bf16_step(name, "cuda")
    assert math.isfinite(loss) and torch.isfinite(mixed).all()


def test_amp_config_takes_false_or_bf16_only() -> None:
    assert load_config(None, []).amp is False
    assert load_config(None, ["amp=bf16"]).amp == "bf16"
    assert load_config(None, ["amp=false"]).amp is False
    for bad in ("amp=fp16", "amp=true", "amp=1"):
        with pytest.raises(ConfigError, match="amp must be"):
            load_config(None, [bad])


def _train_losses(store: Path, out: Path, *overrides: str) -> list[float]:
    args = ["train", "--store", str(store), "--model", "ml2p", "--out", str(out), *overrides]
    assert main([*args, "epochs=2", "batch_size=8", "--threads", "1", "--json"]) == 0
    with (out / "history.csv").open() as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def test_train_with_bf16_amp_end_to_end(tiny_store: Path, tmp_path: Path) -> None:
    mixed = _train_losses(tiny_store, tmp_path / "bf16", "amp=bf16")
    assert len(mixed) == 2 and all(math.isfinite(x) and x > 0 for x in mixed)
    assert "amp: bf16" in (tmp_path / "bf16" / "config.yaml").read_text()
    plain = _train_losses(tiny_store, tmp_path / "fp32")
    assert mixed != plain  # the trainer did run under bf16 autocast
    assert mixed[0] == pytest.approx(plain[0], rel=0.05)  # ... computing the same function
    # the same settings in the same folder resume (nothing left to train), not "another config"
    assert _train_losses(tiny_store, tmp_path / "bf16", "amp=bf16") == mixed
    # ... and so does a run written before the amp key existed (it trained in float32)
    last = tmp_path / "fp32" / "last.pt"
    ckpt = load_checkpoint(last)
    del ckpt.config["amp"]
    save_checkpoint(last, ckpt)
    assert _train_losses(tiny_store, tmp_path / "fp32") == plain
