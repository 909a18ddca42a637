"""Projection heads, encoder taps and the local-stage choice on a tiny nnU-Net 2D architecture."""

from __future__ import annotations

import pytest
import torch

from nnunetv2_glrp.models import ProjectionHeads, default_local_stage, encoder_features, stage_feature_sizes

ARCH = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "arch_kwargs": {
        "n_stages": 4, "features_per_stage": [8, 16, 32, 32], "conv_op": "torch.nn.modules.conv.Conv2d",
        "kernel_sizes": [[3, 3]] * 4, "strides": [[1, 1], [2, 2], [2, 2], [2, 2]], "n_conv_per_stage": [1, 1, 1, 1],
        "n_conv_per_stage_decoder": [1, 1, 1], "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    },
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
}


def _build(seed: int):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    torch.manual_seed(seed)
    return get_network_from_plans(ARCH["network_class_name"], ARCH["arch_kwargs"], ARCH["_kw_requires_import"],
                                  1, 4, deep_supervision=True)


@pytest.fixture(scope="module")
def network():
    return _build(0)


def test_encoder_taps_shapes(network):
    feats = encoder_features(network, torch.randn(2, 1, 48, 40))
    assert [tuple(f.shape) for f in feats] == [(2, 8, 48, 40), (2, 16, 24, 20), (2, 32, 12, 10), (2, 32, 6, 5)]
    sizes = stage_feature_sizes((48, 40), ARCH["arch_kwargs"]["strides"])
    assert sizes == [tuple(f.shape[2:]) for f in feats]


def test_pre_norm_taps_are_what_each_stage_normalises(network):
    """Invariant: each stage's norm and nonlinearity applied to its pre-norm tap give the stage output; the
    taps carry gradients to the encoder; the hooks are gone afterwards."""
    from nnunetv2_glrp.models.taps import last_convolution

    x = torch.randn(3, 1, 48, 40)
    out = encoder_features(network, x)
    pre = encoder_features(network, x, tap="pre-norm")
    assert [p.shape for p in pre] == [o.shape for o in out]
    for stage, p, o in zip(network.encoder.stages, pre, out):
        block = [m for m in stage.modules() if hasattr(m, "norm") and hasattr(m, "nonlin")][-1]
        assert last_convolution(stage) is block.conv
        torch.testing.assert_close(block.nonlin(block.norm(p.clone())), o)
        assert not torch.allclose(p, o)  # really before the norm
    pre[-1].sum().backward()
    assert network.encoder.stages[0][0].convs[0].conv.weight.grad is not None
    assert all(not m._forward_hooks for m in network.modules())
    with pytest.raises(ValueError, match="feature tap"):
        encoder_features(network, x, tap="post-norm")


def test_default_local_stage_is_deepest_at_least_9x9():
    strides = ARCH["arch_kwargs"]["strides"]
    assert default_local_stage((48, 40), strides) == 2  # 12 x 10; stage 3 is 6 x 5
    assert default_local_stage((72, 72), strides) == 3  # 9 x 9
    assert default_local_stage((64, 72), strides) == 2  # stage 3 would be 8 x 9
    with pytest.raises(ValueError, match="no encoder stage"):
        default_local_stage((8, 8), strides)
    # ACDC's nnU-Net 2d plan: 256 x 224, 7 stages -> stage 4 (16 x 14); stage 5 is 8 x 7
    acdc = [[1, 1]] + [[2, 2]] * 6
    assert default_local_stage((256, 224), acdc) == 4


def test_heads_shapes_and_outside_network(network):
    heads = ProjectionHeads(ARCH["arch_kwargs"]["features_per_stage"], local_stage=2)
    feats = encoder_features(network, torch.randn(4, 1, 48, 40))
    z_g, z_l = heads(feats)
    assert z_g.shape == (4, 512) and z_l.shape == (4 * 9, 512)
    assert heads(feats, use_global=False)[0] is None and heads(feats, use_local=False)[1] is None
    torch.testing.assert_close(heads(feats, use_global=False)[1], z_l)
    net_keys = set(network.state_dict())
    assert not any("head" in k or k.startswith("mlp") for k in net_keys)
    assert not any(p is q for p in heads.parameters() for q in network.parameters())
    # mean, std and max of each of the 32 channels (models/heads.py)
    assert heads.local_head.mlp[1].in_features == 3 * 32 and heads.global_head.mlp[1].in_features == 3 * 32


def test_network_state_loads_strictly_into_a_fresh_network_without_the_heads(network):
    """What nnU-Net does at inference: the trained network's state dict (no head in it) loads strictly into a
    freshly built network, which then computes the same outputs; extra (head) keys or other shapes are refused."""
    x = torch.randn(2, 1, 48, 40)
    fresh = _build(1)  # no dropout or batch norm in ARCH: train mode computes deterministically
    with torch.no_grad():
        assert not torch.allclose(fresh(x)[0], network(x)[0])
        state = network.state_dict()
        fresh.load_state_dict(state, strict=True)
        for k, v in fresh.state_dict().items():
            assert torch.equal(v, state[k]), k
        torch.testing.assert_close(fresh(x)[0], network(x)[0], rtol=0, atol=0)
    heads = ProjectionHeads(ARCH["arch_kwargs"]["features_per_stage"], local_stage=2)
    with_heads = {**state, **{f"heads.{k}": v for k, v in heads.state_dict().items()}}
    with pytest.raises(RuntimeError, match="Unexpected key.*heads.global_head"):
        _build(2).load_state_dict(with_heads, strict=True)
    key = next(k for k in state if k.endswith("weight") and state[k].ndim == 4)
    with pytest.raises(RuntimeError, match="size mismatch"):
        _build(2).load_state_dict({**state, key: state[key][:1]}, strict=True)


def test_local_head_patch_order_is_view_major():
    heads = ProjectionHeads([4, 4], local_stage=0, hidden=8, out_dim=3).eval()  # BatchNorm per patch, not per batch
    feats = torch.zeros(2, 4, 9, 9)
    feats[1, :, 0:3, 6:9] = 5.0  # view 1, top-right cell (row 0, col 2) -> patch 1 * 9 + 2
    z = heads.local_head(feats)
    base = heads.local_head(torch.zeros(1, 4, 9, 9))[0]
    changed = [i for i in range(18) if not torch.allclose(z[i], base)]
    assert changed == [11]


def test_local_head_of_a_4x4_grid():
    heads = ProjectionHeads([4, 4], local_stage=0, hidden=8, out_dim=3, grid=4).eval()  # BatchNorm per patch
    feats = torch.zeros(2, 4, 8, 8)
    feats[1, :, 0:2, 6:8] = 5.0  # view 1, cell (row 0, col 3) -> patch 1 * 16 + 3
    z = heads.local_head(feats)
    assert z.shape == (2 * 16, 3)
    base = heads.local_head(torch.zeros(1, 4, 8, 8))[0]
    assert [i for i in range(32) if not torch.allclose(z[i], base)] == [19]


def test_local_stage_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        ProjectionHeads([8, 16], local_stage=2)
