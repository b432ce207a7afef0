"""Losses against explicit oracles."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlzsl.errors import ConfigError
from mlzsl.training.losses import LOSSES, get_loss, ranking_loss, weighted_bce_loss

torch.set_num_threads(1)


def ranking_oracle(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """LESA's ranking loss, one image and one pair at a time."""
    total = 0.0
    for s, y in zip(scores.tolist(), targets.tolist(), strict=True):
        hinge_sum, violations = 0.0, 0
        for p in range(len(y)):
            for n in range(len(y)):
                if y[p] == 1 and y[n] == -1:
                    d = max(0.0, 1.0 + s[n] - s[p])
                    hinge_sum += d
                    violations += d > 0
        total += hinge_sum / (violations + 1e-8)
    return total / len(scores)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 5),
    labels=st.integers(1, 8),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([0.1, 1.0, 5.0]),
)
def test_ranking_loss_matches_the_double_loop(
    batch: int, labels: int, seed: int, scale: float
) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = scale * torch.randn(batch, labels, generator=g, dtype=torch.float64)
    targets = torch.randint(-1, 2, (batch, labels), generator=g)  # 0 = not annotated
    expected = ranking_oracle(scores, targets)
    assert ranking_loss(scores, targets).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def _dense_ranking_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The [B, L, L] formulation the packed one replaced (differentiable reference)."""
    pairs = (targets < 0).unsqueeze(2) & (targets > 0).unsqueeze(1)  # [B, L(n), L(p)]
    margin = 1 + scores.unsqueeze(2) - scores.unsqueeze(1)
    hinge = torch.where(pairs, margin.clamp_min(0), margin.new_zeros(()))
    violations = (hinge > 0).sum(dim=(1, 2)).to(hinge.dtype)
    return (hinge.sum(dim=(1, 2)) / (violations + 1e-8)).mean()


def test_ranking_loss_gradient_equals_the_dense_formulation() -> None:
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(6, 40, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(-1, 2, (6, 40), generator=g)
    targets[0] = 0  # an image with no pairs
    targets[1] = 1  # only positives
    (packed,) = torch.autograd.grad(ranking_loss(scores, targets), scores)
    (dense,) = torch.autograd.grad(_dense_ranking_loss(scores, targets), scores)
    torch.testing.assert_close(packed, dense, rtol=1e-12, atol=1e-12)


def test_ranking_loss_at_open_images_width_stays_small() -> None:
    """7,586 labels, 8 positives and 8 verified negatives an image (Open Images-like): the old
    [B, L, L] tensor would be 96 × 7,586² floats (22 GB); packed it is [96, 8, 8]."""
    g = torch.Generator().manual_seed(0)
    batch, labels = 96, 7586
    scores = torch.randn(batch, labels, generator=g, dtype=torch.float64)
    targets = torch.zeros(batch, labels, dtype=torch.int8)
    for row in range(batch):
        chosen = torch.randperm(labels, generator=g)[:16]
        targets[row, chosen[:8]], targets[row, chosen[8:]] = 1, -1
    loss = ranking_loss(scores, targets)  # would not fit in memory unpacked
    rows = slice(0, 3)  # the oracle is slow: a few images, on their annotated columns only
    columns = (targets[rows] != 0).any(dim=0)
    expected = ranking_oracle(scores[rows][:, columns], targets[rows][:, columns])
    assert ranking_loss(scores[rows], targets[rows]).item() == pytest.approx(expected, rel=1e-9)
    assert torch.isfinite(loss)


def test_images_without_pairs_count_as_zero_in_the_mean() -> None:
    scores = torch.tensor([[0.0, 0.5, 3.0], [1.0, 2.0, 3.0]])
    targets = torch.tensor([[1, -1, 0], [1, 1, 0]])  # image 2: positives only, no pair
    # image 1: d = 1 + 0.5 - 0 = 1.5 on one violating pair; image 2: 0; mean over both images
    assert ranking_loss(scores, targets).item() == pytest.approx(0.75)


def test_ranking_loss_is_zero_when_positives_lead_by_the_margin() -> None:
    scores = torch.tensor([[3.0, 2.0, 1.0, -5.0], [0.0, 10.0, -1.0, 9.0]], requires_grad=True)
    targets = torch.tensor([[1, 0, -1, -1], [-1, 1, -1, 0]])
    loss = ranking_loss(scores, targets)
    assert loss.item() == 0.0
    loss.backward()
    assert scores.grad is not None and (scores.grad == 0).all()


def test_ranking_loss_ignores_scores_of_unannotated_labels() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 6, generator=g)
    targets = torch.randint(-1, 2, (4, 6), generator=g)
    changed = torch.where(targets == 0, scores + 100 * torch.randn(4, 6, generator=g), scores)
    torch.testing.assert_close(ranking_loss(changed, targets), ranking_loss(scores, targets))


def test_ranking_loss_promotes_half_precision() -> None:
    scores = torch.randn(2, 5).half()
    targets = torch.tensor([[1, -1, -1, 0, 1], [-1, 1, 0, 0, -1]])
    loss = ranking_loss(scores, targets)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ranking_oracle(scores.float(), targets), rel=1e-5)


def bce_oracle(scores: torch.Tensor, targets: torch.Tensor, pos_weight: float) -> float:
    total, count = 0.0, 0
    for s, y in zip(scores.flatten().tolist(), targets.flatten().tolist(), strict=True):
        if y == 0:
            continue
        p = torch.sigmoid(torch.tensor(s, dtype=torch.float64)).item()
        total += -pos_weight * torch.log(torch.tensor(p)).item() if y == 1 else 0.0
        total += -torch.log(torch.tensor(1 - p)).item() if y == -1 else 0.0
        count += 1
    return total / count


def test_bce_masks_unannotated_entries_and_weights_positives() -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 5, generator=g, dtype=torch.float64)
    targets = torch.tensor([[1, -1, 0, -1, -1], [0, 0, 1, -1, -1], [-1, -1, -1, 0, 1]])
    assert weighted_bce_loss(scores, targets, 2.5).item() == pytest.approx(
        bce_oracle(scores, targets, 2.5)
    )
    # default weight: annotated negatives / positives in the batch = 8 / 3
    assert weighted_bce_loss(scores, targets).item() == pytest.approx(
        bce_oracle(scores, targets, 8 / 3)
    )
    changed = torch.where(targets == 0, scores - 50.0, scores)
    torch.testing.assert_close(
        weighted_bce_loss(changed, targets), weighted_bce_loss(scores, targets)
    )


def test_bce_without_annotations_is_zero_with_a_gradient() -> None:
    scores = torch.randn(2, 3, requires_grad=True)
    loss = weighted_bce_loss(scores, torch.zeros(2, 3, dtype=torch.int8))
    assert loss.item() == 0.0
    loss.backward()
    assert scores.grad is not None


def test_get_loss_looks_up_and_rejects_unknowns() -> None:
    assert set(LOSSES) == {"ranking", "bce"}
    assert get_loss("ranking") is ranking_loss
    assert get_loss("bce") is weighted_bce_loss
    with pytest.raises(ConfigError, match="ranking"):
        get_loss("nope")
