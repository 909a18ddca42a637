"""The floor of the soft-target loss (target entropy): known answers, a slow loop, and that it is reachable."""

from __future__ import annotations

import math

import pytest
import torch

from nnunetv2_glrp.losses.relative_position import relative_position_loss, soft_target_entropy


def test_known_answers():
    n = 5
    uniform = torch.ones(n, n)
    assert soft_target_entropy(uniform).item() == pytest.approx(math.log(n - 1))  # uniform over 4 others
    one_partner = torch.eye(n).roll(1, dims=1) + torch.eye(n)  # one positive per anchor (diagonal ignored)
    assert soft_target_entropy(one_partner).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="zero off-diagonal"):
        soft_target_entropy(torch.eye(3))


def test_matches_a_loop_over_anchors():
    w = torch.rand(7, 7, generator=torch.Generator().manual_seed(0))
    w[2] = 0.0  # an anchor without targets is left out, as the loss leaves it out
    entropies = []
    for i in range(7):
        row = [w[i, j].item() for j in range(7) if j != i]
        if sum(row) == 0:
            continue
        p = [v / sum(row) for v in row]
        entropies.append(-sum(q * math.log(q) for q in p if q > 0))
    assert soft_target_entropy(w).item() == pytest.approx(sum(entropies) / len(entropies), rel=1e-5)


def test_loss_minus_floor_is_a_kl_that_optimisation_drives_towards_zero():
    gen = torch.Generator().manual_seed(0)
    positions = torch.rand(8, generator=gen)
    w = 1.0 / (1.0 + 15.0 * (positions[:, None] - positions[None, :]) ** 2)
    floor = soft_target_entropy(w).item()
    z = torch.randn(8, 16, generator=gen, requires_grad=True)
    optimizer = torch.optim.Adam([z], lr=0.05)
    excess = []
    for _ in range(300):
        loss = relative_position_loss(z, w, tau=0.1)
        excess.append(loss.item() - floor)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert min(excess) >= -1e-5  # never below the floor
    assert excess[-1] < 0.1 * excess[0] and excess[-1] < 0.05


def test_collapsed_embeddings_lose_ln_n_minus_1_whatever_the_weights():
    """The 'collapse' level the pretraining log prints beside the floor: identical embeddings make every
    similarity 1 and the softmax uniform over the n - 1 others, so the loss is ln(n - 1) for any targets."""
    gen = torch.Generator().manual_seed(3)
    for n in (4, 16, 18 * 8):
        z = torch.ones(n, 8)
        weights = torch.rand(n, n, generator=gen)
        assert relative_position_loss(z, weights).item() == pytest.approx(math.log(n - 1), rel=1e-5)
        assert relative_position_loss(z, weights).item() > soft_target_entropy(weights).item()
