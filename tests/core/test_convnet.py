"""Tests for bncli/core/convnet.py: whole small convnets pass the float64 gradient check in every BN placement and
granularity, share their initial weights across arms, and infer the same whatever the chunking."""

from __future__ import annotations

import numpy as np
import pytest

from bncli.core.batchnorm import BatchOfOneError, SpatialBatchNorm
from bncli.core.convnet import ConvNet, ConvShapeError, ConvSpec, conv_shapes

from .gradcheck import numerical_grad, rel_error

SHAPE = (2, 6, 6)  # C, H, W
SPECS = [ConvSpec(3, kernel=3, padding=1, pool=2, pool_type="max"), ConvSpec(4, kernel=2, stride=1, pool=2,
                                                                              pool_type="avg")]


def _net(bn="before", per="channel", impl="fused", dtype=np.float64, seed=0, activation="tanh", **kw):
    return ConvNet(SHAPE, SPECS, [5], 3, rng=np.random.default_rng(seed), activation=activation, bn=bn,
                   init="glorot", dtype=dtype, bn_impl=impl, bn_per=per, **kw)


@pytest.mark.parametrize("impl", ["fused", "textbook"])
@pytest.mark.parametrize("bn,per", [("none", "channel"), ("before", "channel"), ("after", "channel"),
                                    ("before", "activation"), ("after", "activation")])
def test_whole_convnet_gradient_check(bn, per, impl):
    """Every parameter's gradient, through conv, BN (per channel or per activation), pooling, flatten and dense
    layers, against central differences of sum(logits * G) with a random upstream gradient G."""
    rng = np.random.default_rng(1)
    net = _net(bn, per, impl)
    for name, p in net.params.items():  # non-trivial gamma and beta, so their paths are exercised
        if name.endswith("gamma"):
            p[...] = rng.uniform(0.5, 1.5, p.shape)
        elif name.endswith("beta"):
            p[...] = 0.3 * rng.standard_normal(p.shape)
    x = rng.standard_normal((4, *SHAPE))
    G = rng.standard_normal((4, 3))

    def loss():
        return float(np.sum(net.forward(x, "batch") * G))

    net.forward(x, "batch")
    net.backward(G.copy())
    analytic = {k: v.copy() for k, v in net.grads.items()}
    for k, p in net.params.items():
        assert rel_error(analytic[k], numerical_grad(loss, p)) < 1e-7, k


def test_placements_share_initial_weights_and_bias_is_dropped_before_bn():
    nets = {bn: _net(bn) for bn in ("none", "before", "after")}
    for key in ("conv1.W", "conv2.W", "dense1.W", "out.W"):
        assert np.array_equal(nets["none"].params[key], nets["before"].params[key])
        assert np.array_equal(nets["none"].params[key], nets["after"].params[key])
    assert "conv1.b" in nets["none"].params and "conv1.b" not in nets["before"].params
    assert "conv1.b" in nets["after"].params


def test_per_channel_has_channel_parameters_per_activation_has_one_per_position():
    ch, act = _net("before", "channel"), _net("before", "activation")
    assert ch.params["convbn1.gamma"].shape == (3,)
    assert act.params["convbn1.gamma"].shape == (6 * 6 * 3,)
    assert ch.params["bn1.gamma"].shape == act.params["bn1.gamma"].shape == (5,)  # dense BN is per feature either way
    x = np.random.default_rng(0).standard_normal((8, *SHAPE))
    assert not np.allclose(ch.forward(x, "train"), act.forward(x, "train"))


def test_rows_and_images_give_the_same_output_and_eval_does_not_depend_on_chunks():
    net = _net("before", dtype=np.float32)
    x = np.random.default_rng(0).standard_normal((10, *SHAPE)).astype(np.float32)
    for _ in range(3):
        net.forward(x, "train")
    a = net.forward(x.reshape(10, -1), "eval")
    b = net.forward(x, "eval")
    assert a.dtype == np.float32 and np.array_equal(a, b)
    for chunk in range(2, 12):  # 3 and 9 leave one row over: merged into the chunk before (a 1-row GEMM rounds
        assert np.array_equal(net.logits(x, chunk=chunk), b), chunk  # otherwise on OpenBLAS's Haswell kernel)


def test_chunks_cover_every_row_and_never_end_with_a_single_row():
    from bncli.core.model import chunks

    assert chunks(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert chunks(10, 5) == [(0, 5), (5, 10)] and chunks(1, 4) == [(0, 1)] and chunks(0, 4) == []
    for n in range(0, 40):
        for c in range(1, 12):
            spans = chunks(n, c)
            assert [i for a, b in spans for i in range(a, b)] == list(range(n))
            assert len(spans) <= 1 or spans[-1][1] - spans[-1][0] > 1 or c == 1


def test_one_image_trains_but_a_one_by_one_map_of_one_image_is_refused():
    net = _net("before")
    x = np.random.default_rng(0).standard_normal((1, *SHAPE))
    # The conv BN sees 36 values per channel; the dense BN after flattening sees only N = 1: refused there.
    with pytest.raises(BatchOfOneError, match="per channel: N = 1"):
        net.forward(x, "train")
    conv_only = ConvNet(SHAPE, SPECS, [], 3, rng=np.random.default_rng(0), bn="before", dtype=np.float64)
    out = conv_only.forward(x, "train")
    assert np.isfinite(out).all()
    tiny = ConvNet((1, 1, 1), [ConvSpec(2, kernel=1)], [], 3, rng=np.random.default_rng(0), bn="before")
    with pytest.raises(BatchOfOneError, match="N\\*H\\*W = 1\\*1\\*1"):
        tiny.forward(np.ones((1, 1)), "train")


def test_population_statistics_use_the_values_per_channel():
    """Alg. 2's unbiased factor is c/(c-1) with c = m*H*W values per channel statistic, not m."""
    net = _net("before", dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((12, *SHAPE))
    stats = net.population_stats(x, 4)
    net.forward(x[:4], "batch")
    layer = dict(net.bn_layers())["convbn1"]
    assert isinstance(layer, SpatialBatchNorm) and layer.count == 4 * 6 * 6
    rows = []
    for i in range(3):
        net.forward(x[4 * i:4 * i + 4], "batch")
        rows.append(layer.batch_stats[1].copy())
    c = 4 * 36
    np.testing.assert_allclose(stats["convbn1.running_var"], np.mean(rows, axis=0) * c / (c - 1), rtol=1e-12)


def test_shapes_and_their_errors():
    assert conv_shapes((1, 28, 28), [ConvSpec(6, 5, pool=2), ConvSpec(16, 5, pool=2)]) == [
        ((24, 24, 6), (12, 12, 6)), ((8, 8, 16), (4, 4, 16))]
    with pytest.raises(ConvShapeError, match="5x5 kernel does not fit the 4x4") as e:
        conv_shapes((1, 8, 8), [ConvSpec(2, 5), ConvSpec(2, 5)])
    assert (e.value.index, e.value.key) == (1, "kernel")
    with pytest.raises(ConvShapeError) as e:
        conv_shapes((1, 8, 8), [ConvSpec(2, 3, pool=8)])
    assert (e.value.index, e.value.key) == (0, "pool")
    with pytest.raises(ValueError, match="expected images of shape"):
        _net().forward(np.zeros((2, 5)), "eval")
