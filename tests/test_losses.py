"""GLRP losses: reference double loops, known answers, optimisation fixed points, numerics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nnunetv2_glrp.losses import (
    LossWeights,
    global_relative_position_loss,
    glrp_loss,
    local_pair_weights,
    relative_position_loss,
    slice_similarity,
)

torch.set_num_threads(1)


def reference_loss(z: torch.Tensor, w: torch.Tensor, tau: float, formulation: str) -> float:
    """Straight from the formulas, one anchor and one pair at a time (float64)."""
    z = z.double()
    n = z.shape[0]
    s = [[float(F.cosine_similarity(z[i], z[j], dim=0)) for j in range(n)] for i in range(n)]
    total = 0.0
    for i in range(n):
        others = [k for k in range(n) if k != i]
        if formulation == "soft-target":
            denom = sum(math.exp(s[i][k] / tau) for k in others)
            wsum = sum(float(w[i, k]) for k in others)
            total += -sum(
                float(w[i, j]) / wsum * math.log(math.exp(s[i][j] / tau) / denom) for j in others
            )
        else:
            denom = sum(float(w[i, k]) * math.exp(s[i][k] / tau) for k in others)
            total += -sum(
                math.log(float(w[i, j]) * math.exp(s[i][j] / tau) / denom) for j in others
            ) / (n - 1)
    return total / n


# ---------------------------------------------------------------- slice similarity


def test_slice_similarity_values():
    d = slice_similarity(torch.tensor([0.0, 0.35, 1.0, 0.5]))
    assert d[0, 0] == pytest.approx(1.0)
    assert d[0, 1] == pytest.approx(1 / (1 + 15 * 0.1225), abs=1e-6)
    assert d[0, 1] == pytest.approx(0.352423, abs=1e-6)
    assert d[0, 2] == pytest.approx(0.0625, abs=1e-7)
    assert torch.allclose(d, d.T)
    lin = slice_similarity(torch.tensor([0.1, 0.45, 1.0]), kind="linear")
    assert lin[0, 1] == pytest.approx(0.65, abs=1e-6)
    assert lin[0, 2] == pytest.approx(0.1, abs=1e-6)
    assert torch.allclose(lin.diagonal(), torch.ones(3))
    assert slice_similarity(torch.tensor([0.2, 0.4]), a=5.0)[0, 1] == pytest.approx(1 / 1.2)


@pytest.mark.parametrize(
    "positions, kwargs, match",
    [
        (torch.tensor([0.2, 1.5]), {}, "lie in"),
        (torch.tensor([[0.2, 0.5]]), {}, "1-D"),
        (torch.tensor([0.2, float("nan")]), {}, "NaN"),
        (torch.tensor([0.2, 0.5]), {"kind": "cosine"}, "kind"),
        (torch.tensor([0.2, 0.5]), {"a": 0.0}, "positive"),
    ],
)
def test_slice_similarity_rejects_bad_input(positions, kwargs, match):
    with pytest.raises(ValueError, match=match):
        slice_similarity(positions, **kwargs)


# ---------------------------------------------------------------- relative_position_loss


@pytest.mark.parametrize("formulation", ["soft-target", "paper-literal"])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_double_loop(formulation, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(7, 5, generator=g, dtype=torch.float64)
    w = torch.rand(7, 7, generator=g, dtype=torch.float64) + 0.05
    w = w + w.T
    loss = relative_position_loss(z, w, tau=0.3, formulation=formulation)
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx(reference_loss(z, w, 0.3, formulation), rel=1e-5)
    # asymmetric weights are fine too (rows are anchors)
    w2 = torch.rand(7, 7, generator=g, dtype=torch.float64) + 0.05
    loss2 = relative_position_loss(z, w2, tau=0.1, formulation=formulation)
    assert float(loss2) == pytest.approx(reference_loss(z, w2, 0.1, formulation), rel=1e-5)


@pytest.mark.parametrize("formulation", ["soft-target", "paper-literal"])
def test_identical_embeddings_uniform_weights_give_log_n_minus_1(formulation):
    z = torch.ones(6, 4)
    loss = relative_position_loss(z, torch.ones(6, 6), tau=0.1, formulation=formulation)
    assert float(loss) == pytest.approx(math.log(5), rel=1e-6)


def test_hand_computed_three_samples():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # s01 = 1, s02 = s12 = 0
    w = torch.tensor([[0.0, 2.0, 1.0], [2.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    e = math.e
    soft = (2 * (math.log(1 + e) - 2 / 3) + math.log(2)) / 3
    literal = (2 * math.log(2 * e + 1) - 1) / 3
    assert float(relative_position_loss(z, w, tau=1.0)) == pytest.approx(soft, rel=1e-6)
    assert float(
        relative_position_loss(z, w, tau=1.0, formulation="paper-literal")
    ) == pytest.approx(literal, rel=1e-6)
    # the diagonal is ignored, whatever it holds
    w_diag = w + torch.diag(torch.tensor([5.0, 0.0, 7.0]))
    assert float(relative_position_loss(z, w_diag, tau=1.0)) == pytest.approx(soft, rel=1e-6)


NEAR = [(0, 1), (2, 3)]
FAR = [(0, 2), (0, 3), (1, 2), (1, 3)]


def _settle(formulation: str, seed: int) -> tuple[float, float]:
    positions = torch.tensor([0.10, 0.15, 0.90, 0.95])
    d = slice_similarity(positions)
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(seed)).requires_grad_()
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        global_relative_position_loss(z, positions, tau=0.1, formulation=formulation).backward()
        opt.step()
    zn = F.normalize(z.detach(), dim=1)
    s = zn @ zn.T
    gap = sum(float(s[i, j]) for i, j in NEAR) / 2 - sum(float(s[i, j]) for i, j in FAR) / 4
    expected = 0.1 * (
        sum(math.log(d[i, j]) for i, j in NEAR) / 2 - sum(math.log(d[i, j]) for i, j in FAR) / 4
    )
    return gap, expected


@pytest.mark.parametrize("seed", [0, 1])
def test_soft_target_settles_near_slices_closer(seed):
    gap, expected = _settle("soft-target", seed)
    assert expected == pytest.approx(0.2323, abs=1e-3)
    assert gap == pytest.approx(expected, abs=0.01)  # measured: 0.2323


@pytest.mark.parametrize("seed", [0, 1])
def test_paper_literal_settles_near_slices_apart(seed):
    gap, expected = _settle("paper-literal", seed)
    assert gap == pytest.approx(-expected, abs=0.01)  # measured: -0.2323


@pytest.mark.parametrize("formulation", ["soft-target", "paper-literal"])
def test_invariant_to_batch_order(formulation):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(9, 6, generator=g)
    w = torch.rand(9, 9, generator=g) + 0.1
    perm = torch.randperm(9, generator=g)
    a = relative_position_loss(z, w, formulation=formulation)
    b = relative_position_loss(z[perm], w[perm][:, perm], formulation=formulation)
    assert float(a) == pytest.approx(float(b), rel=1e-5)


@pytest.mark.parametrize("formulation", ["soft-target", "paper-literal"])
def test_float16_inputs_and_autocast_stay_finite(formulation):
    g = torch.Generator().manual_seed(4)
    z = (torch.randn(12, 16, generator=g) * 30).half().requires_grad_()
    w = slice_similarity(torch.rand(12, generator=g)).half()
    loss = relative_position_loss(z, w, tau=0.1, formulation=formulation)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert z.grad is not None and z.grad.dtype == torch.float16
    assert bool(torch.isfinite(z.grad).all()) and float(z.grad.abs().sum()) > 0
    ref = relative_position_loss(z.detach().float(), w.float(), tau=0.1, formulation=formulation)
    assert float(loss.detach()) == pytest.approx(float(ref), rel=1e-5)
    z32 = z.detach().float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        projected = z32 @ torch.eye(16)  # bfloat16 under autocast
        assert projected.dtype == torch.bfloat16
        loss_ac = relative_position_loss(projected, w, formulation=formulation)
    assert loss_ac.dtype == torch.float32 and torch.isfinite(loss_ac)


def test_zero_weight_rows():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(5, 3, generator=g)
    w = torch.rand(5, 5, generator=g) + 0.1
    w[2] = 0.0  # anchor 2 has no target: left out of the mean, still a negative for the others
    full = float(relative_position_loss(z, w))
    per_anchor = []
    zn = F.normalize(z.double(), dim=1)
    s = zn @ zn.T / 0.1
    for i in [0, 1, 3, 4]:
        others = [k for k in range(5) if k != i]
        lse = torch.logsumexp(s[i, others], 0)
        wsum = float(w[i, others].sum())
        per_anchor.append(-sum(float(w[i, j]) / wsum * float(s[i, j] - lse) for j in others))
    assert full == pytest.approx(sum(per_anchor) / 4, rel=1e-5)
    with pytest.raises(ValueError, match="zero off-diagonal"):
        relative_position_loss(z, torch.eye(5))
    with pytest.raises(ValueError, match="strictly positive"):
        relative_position_loss(z, w, formulation="paper-literal")


@pytest.mark.parametrize(
    "z, w, kwargs, match",
    [
        (torch.randn(4), torch.ones(4, 4), {}, r"\[N, D\]"),
        (torch.randn(4, 3), torch.ones(3, 3), {}, r"\[N, N\]"),
        (torch.randn(1, 3), torch.ones(1, 1), {}, "at least 2"),
        (torch.randn(4, 3), -torch.ones(4, 4), {}, "non-negative"),
        (torch.randn(4, 3), torch.full((4, 4), float("nan")), {}, "NaN"),
        (torch.randn(4, 3), torch.ones(4, 4), {"tau": 0.0}, "tau"),
        (torch.randn(4, 3), torch.ones(4, 4), {"formulation": "literal"}, "formulation"),
    ],
)
def test_rejects_bad_input(z, w, kwargs, match):
    with pytest.raises(ValueError, match=match):
        relative_position_loss(z, w, **kwargs)


# ---------------------------------------------------------------- GRP / LRP / combination


def test_global_loss_is_relative_position_loss_with_slice_similarity():
    g = torch.Generator().manual_seed(6)
    z = torch.randn(6, 8, generator=g)
    pos = torch.tensor([0.2, 0.4, 0.6, 0.2, 0.4, 0.6])
    for kind in ["inverse-quadratic", "linear"]:
        expected = relative_position_loss(z, slice_similarity(pos, a=10.0, kind=kind), tau=0.2)
        got = global_relative_position_loss(z, pos, a=10.0, tau=0.2, kind=kind)
        assert float(got) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="same 2N"):
        global_relative_position_loss(z, pos[:5])


def test_local_pair_weights():
    g = torch.Generator().manual_seed(7)
    psm = torch.rand(18, 18, generator=g)
    view = torch.arange(2).repeat_interleave(9)
    d = torch.tensor([[1.0, 0.3], [0.3, 1.0]])
    w = local_pair_weights(psm, view, d)
    for l in range(18):
        for m in range(18):
            assert float(w[l, m]) == pytest.approx(float(psm[l, m] * d[view[l], view[m]]))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        local_pair_weights(psm, view + 1, d)
    with pytest.raises(ValueError, match=r"slice_of_patch must be \[P\]"):
        local_pair_weights(psm, view[:10], d)


def test_lrp_gradient_steps_pull_high_psm_pairs_together():
    # two groups of patches with high PSM inside a group, low across; views alternate
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    psm = torch.where(group[:, None] == group[None, :], 0.9, 0.01)
    view = torch.tensor([0, 1, 0, 1, 0, 1])
    d = slice_similarity(torch.tensor([0.5, 0.55]))
    weights = local_pair_weights(psm, view, d)
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(8)).requires_grad_()
    opt = torch.optim.SGD([z], lr=0.5)
    same = group[:, None] == group[None, :]
    off = ~torch.eye(6, dtype=torch.bool)

    def gap() -> float:
        zn = F.normalize(z.detach(), dim=1)
        s = zn @ zn.T
        return float(s[same & off].mean() - s[~same].mean())

    start = gap()
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = relative_position_loss(z, weights)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    # soft-target optimum: gap ~ tau ln(0.9 / 0.01) = 0.45 (less the small d_ij effect)
    assert gap() > start + 0.1 and gap() > 0.3


def test_glrp_loss_combination():
    a, b = torch.tensor(2.0), torch.tensor(4.0)
    assert float(glrp_loss(a, b)) == pytest.approx(3.0)
    assert float(glrp_loss(a, None, (1.0, 0.0))) == pytest.approx(2.0)
    from nnunetv2_glrp.pretraining.methods import PRETRAINING_METHODS

    weights = {name: m.loss_weights for name, m in PRETRAINING_METHODS.items()}
    assert float(glrp_loss(torch.tensor(float("nan")), b, weights["LRP"])) == 4.0
    # the paper's lambdas (GLRP-cl 0.5/0.5, GRP-cl 1/0, LRP-cl 0/1, GLRP-cl* linear d), from the registry
    assert weights["GLRP"] == LossWeights(0.5, 0.5)
    assert weights["GRP"] == LossWeights(1.0, 0.0)
    assert weights["LRP"] == LossWeights(0.0, 1.0)
    assert weights["GLRPLinear"] == LossWeights(0.5, 0.5, "linear")
    assert all(weights[m] == LossWeights(1.0, 0.0) for m in ("SimCLR", "GCL", "PCL"))
    with pytest.raises(ValueError, match="l_lrp is None"):
        glrp_loss(a, None)
    with pytest.raises(ValueError):
        LossWeights(0.0, 0.0)
