"""SimCLR, PCL and GCL losses: loops from the papers' formulas, known answers, gradient steps, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nnunetv2_glrp.losses import (global_contrastive_loss, partner_weights, position_threshold_weights,
                                  positional_contrastive_loss, relative_position_loss, same_partition_weights,
                                  simclr_loss)

torch.set_num_threads(1)


def _cos(z: torch.Tensor) -> list[list[float]]:
    z = z.double()
    return [[float(F.cosine_similarity(z[i], z[j], dim=0)) for j in range(len(z))] for i in range(len(z))]


def nt_xent_reference(z: torch.Tensor, tau: float) -> float:
    """SimCLR (Chen et al. 2020, Eq. 1): l(i, j) = -log(exp(s_ij/tau) / sum_{k != i} exp(s_ik/tau)) for the
    positive pair (i, j) = (k, k + N) and (k + N, k), averaged over all 2N anchors."""
    s, n2 = _cos(z), len(z)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        denom = sum(math.exp(s[i][k] / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(s[i][j] / tau) / denom)
    return total / n2


def supcon_reference(z: torch.Tensor, is_positive, tau: float) -> float:
    """SupCon L_out (Khosla et al. 2020, Eq. 2), used by PCL and GCL: for each anchor i,
    -1/|P(i)| sum_{p in P(i)} log(exp(s_ip/tau) / sum_{a != i} exp(s_ia/tau)), averaged over anchors."""
    s, n = _cos(z), len(z)
    total = 0.0
    for i in range(n):
        positives = [p for p in range(n) if p != i and is_positive(i, p)]
        denom = sum(math.exp(s[i][a] / tau) for a in range(n) if a != i)
        total += -sum(math.log(math.exp(s[i][p] / tau) / denom) for p in positives) / len(positives)
    return total / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_simclr_matches_nt_xent_loop(seed):
    z = torch.randn(10, 7, generator=torch.Generator().manual_seed(seed))
    for tau in (0.1, 0.5):
        assert simclr_loss(z, tau=tau).item() == pytest.approx(nt_xent_reference(z, tau), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pcl_matches_supcon_loop_with_position_positives(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(12, 5, generator=g)
    x = torch.rand(6, generator=g).repeat(2)  # views i and i + 6 share the slice's position
    for threshold in (0.2, 0.35):
        ref = supcon_reference(z, lambda i, p: abs(float(x[i]) - float(x[p])) < threshold, 0.1)
        assert positional_contrastive_loss(z, x, threshold=threshold, tau=0.1).item() == \
            pytest.approx(ref, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gcl_matches_supcon_loop_with_partition_positives(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(16, 6, generator=g)
    parts = torch.arange(4).repeat(2).repeat(2)  # 2 volumes x 4 partitions, two views each
    ref = supcon_reference(z, lambda i, p: int(parts[i]) == int(parts[p]), 0.2)
    assert global_contrastive_loss(z, parts, tau=0.2).item() == pytest.approx(ref, rel=1e-5, abs=1e-5)


def test_soft_target_of_indicator_weights_is_supcon_mean_over_positives():
    """Normalising 0/1 weights per anchor gives 1/|P(i)| on each positive: the core's soft target IS SupCon's
    mean over positives, for any (also asymmetric, unnormalised) indicator."""
    g = torch.Generator().manual_seed(5)
    z = torch.randn(8, 4, generator=g)
    mask = (torch.rand(8, 8, generator=g) < 0.4).float()
    mask[torch.arange(8), (torch.arange(8) + 1) % 8] = 1.0  # every anchor has a positive
    ref = supcon_reference(z, lambda i, p: bool(mask[i, p]), 0.1)
    assert relative_position_loss(z, 3.0 * mask, tau=0.1).item() == pytest.approx(ref, rel=1e-5)


def _paired_one_hot(n: int, d: int = 8) -> torch.Tensor:
    """Views i and i + n both equal to e_i: partners at cosine 1, everything else at 0."""
    e = torch.eye(d)[:n]
    return torch.cat([e, e])


def test_known_answers():
    tau = 0.5  # values well above float32 resolution
    # identical embeddings: every softmax is uniform over the 2N - 1 others, whatever the positives
    same = torch.ones(6, 3)
    for loss in (simclr_loss(same), positional_contrastive_loss(same, torch.tensor([0.1, 0.5, 0.9] * 2)),
                 global_contrastive_loss(same, torch.tensor([0, 1, 1] * 2))):
        assert loss.item() == pytest.approx(math.log(5), rel=1e-6)
    z = _paired_one_hot(3)
    denom = math.log(math.exp(1 / tau) + 4)  # partner at s = 1, four others at s = 0
    assert simclr_loss(z, tau).item() == pytest.approx(denom - 1 / tau, rel=1e-5)
    # slices at 0.1, 0.2, 0.9: the first two are positives of each other (|dx| = 0.1 < 0.35), the third only
    # of its own other view: 4 anchors with P = {partner, two at s = 0}, 2 anchors with P = {partner}
    expected = (4 * (denom - 1 / tau / 3) + 2 * (denom - 1 / tau)) / 6
    x = torch.tensor([0.1, 0.2, 0.9] * 2)
    assert positional_contrastive_loss(z, x, 0.35, tau).item() == pytest.approx(expected, rel=1e-5)
    assert global_contrastive_loss(z, torch.tensor([2, 2, 0] * 2), tau).item() == pytest.approx(expected, rel=1e-5)
    # the PCL threshold is strict: |dx| = 0.5 exactly is not a positive at threshold 0.5
    w = position_threshold_weights(torch.tensor([0.25, 0.75, 0.5]), threshold=0.5)
    assert w.tolist() == [[1, 0, 1], [0, 1, 1], [1, 1, 1]]
    assert partner_weights(4).tolist() == [[0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]]
    assert same_partition_weights(torch.tensor([0, 1, 0])).tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]


def _optimise(loss_fn, z0: torch.Tensor, steps: int = 150) -> torch.Tensor:
    z = z0.clone().requires_grad_()
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(z).backward()
        opt.step()
    return F.normalize(z.detach(), dim=1)


def test_gradient_steps_move_embeddings_the_intended_way():
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(8, 8, generator=g)  # 4 slices, two views each
    # SimCLR: the two views of a slice end up closer to each other than to any other view
    zn = _optimise(simclr_loss, z0)
    s = zn @ zn.T
    partner = torch.stack([s[i, (i + 4) % 8] for i in range(8)])
    others = s.masked_fill(torch.eye(8, dtype=torch.bool) | partner_weights(8).bool(), -2).max(dim=1).values
    assert bool((partner > others + 0.3).all()), (partner, others)
    # PCL: slices at 0.1/0.2 and 0.8/0.9 form two groups: near pairs pulled together, far pairs pushed apart
    x = torch.tensor([0.1, 0.2, 0.8, 0.9] * 2)
    zn = _optimise(lambda z: positional_contrastive_loss(z, x), z0)
    _assert_groups(zn @ zn.T, position_threshold_weights(x).bool())
    parts = torch.tensor([0, 0, 3, 3] * 2)
    zn = _optimise(lambda z: global_contrastive_loss(z, parts), z0)
    _assert_groups(zn @ zn.T, same_partition_weights(parts).bool())


def _assert_groups(s: torch.Tensor, positive: torch.Tensor) -> None:
    off = ~torch.eye(len(s), dtype=torch.bool)
    near, far = s[positive & off], s[~positive]
    assert float(near.min()) > float(far.max()) + 0.5, (near, far)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match=r"simclr_loss: z must be \[2N, D\]"):
        simclr_loss(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"positions must be \[2N\] = \[4\]"):
        positional_contrastive_loss(torch.randn(4, 3), torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="lie in \\[0, 1\\]"):
        positional_contrastive_loss(torch.randn(4, 3), torch.tensor([0.1, 0.2, 1.5, 0.1]))
    with pytest.raises(ValueError, match="partitions must be integer labels"):
        global_contrastive_loss(torch.randn(4, 3), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="threshold must be positive"):
        position_threshold_weights(torch.tensor([0.1]), threshold=0.0)
