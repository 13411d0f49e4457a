"""Tests for bncli/core/probes.py: the generic measurements against closed forms and hand computations, and
probe_step against direct evaluations on fresh copies of the model and against train_step's trajectory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bncli.core.convnet import ConvNet, ConvSpec
from bncli.core.layers import softmax_cross_entropy
from bncli.core.model import MLP
from bncli.core.optim import Optimizer
from bncli.core.probes import Smoothness, gradient_change, ics_blocks, probe_step, smoothness, smoothness_summary
from bncli.training import train_step

N_IN, HIDDEN, N_OUT, BATCH = 6, [5, 4], 3, 8
MULTIPLES = (0.5, 1.0, 2.0, 4.0)
LR = 0.3


# -- generic: smoothness on a quadratic ------------------------------------------------------------------------

EIGS = np.array([0.5, 2.0, 7.0, 10.0])


def _quadratic(theta):
    """L = 1/2 θᵀAθ with A = diag(EIGS); returns (loss, gradient)."""
    return 0.5 * float(theta @ (EIGS * theta)), EIGS * theta


def _closed_form(theta, etas):
    """L(θ - ηg) = L - η gᵀg + η²/2 gᵀAg and ||∇L(θ) - ∇L(θ - ηg)|| = η ||Ag||, g = Aθ."""
    g = EIGS * theta
    L = 0.5 * theta @ (EIGS * theta)
    losses = np.array([L - e * (g @ g) + 0.5 * e * e * (g @ (EIGS * g)) for e in etas])
    diffs = np.array([e * np.linalg.norm(EIGS * g) for e in etas])
    return L, g, losses, diffs


def test_smoothness_quadratic_closed_form():
    theta = np.array([1.0, -0.5, 0.3, 0.2])
    etas = [0.05, 0.1, 0.2, 0.25]  # past 1/λ_max the top direction overshoots: the loss falls, then rises
    L, g, losses, diffs = _closed_form(theta, etas)
    s = smoothness(_quadratic, theta, g, etas)
    assert s.base_loss == pytest.approx(L, rel=1e-14)
    assert s.grad_norm == pytest.approx(np.linalg.norm(g), rel=1e-14)
    assert [r[0] for r in s.rows] == etas
    np.testing.assert_allclose([r[1] for r in s.rows], losses, rtol=1e-12)
    np.testing.assert_allclose([r[2] for r in s.rows], diffs, rtol=1e-12)
    variation, predictiveness, beta = smoothness_summary(s)
    all_losses = np.append(losses, L)
    assert variation == pytest.approx(all_losses.max() - all_losses.min(), rel=1e-12)
    assert predictiveness == pytest.approx(diffs.max(), rel=1e-12)
    # ||ηAg|| / ||ηg|| = ||Ag|| / ||g|| for every η: between the smallest and largest eigenvalue
    assert beta == pytest.approx(np.linalg.norm(EIGS * g) / np.linalg.norm(g), rel=1e-12)
    assert EIGS.min() < beta < EIGS.max()


@pytest.mark.parametrize("k", range(len(EIGS)))
def test_smoothness_along_an_eigenvector_gives_its_eigenvalue(k):
    theta = np.zeros(len(EIGS))
    theta[k] = 1.5
    etas = [0.01, 0.03, 0.1]
    L, g, losses, _ = _closed_form(theta, etas)
    s = smoothness(_quadratic, theta, g, etas, base_loss=L)
    variation, predictiveness, beta = smoothness_summary(s)
    assert beta == pytest.approx(EIGS[k], rel=1e-13)
    assert predictiveness == pytest.approx(max(etas) * EIGS[k] * np.linalg.norm(g), rel=1e-13)
    all_losses = np.append(losses, L)
    assert variation == pytest.approx(all_losses.max() - all_losses.min(), rel=1e-12)


def test_loss_variation_includes_the_base_point():
    """Small steps only go down hill: the highest loss of the range is L(θ) itself."""
    theta = np.array([1.0, -0.5, 0.3, 0.2])
    etas = [0.001, 0.002]
    L, g, losses, _ = _closed_form(theta, etas)
    assert (losses < L).all()
    variation, _, _ = smoothness_summary(smoothness(_quadratic, theta, g, etas))
    assert variation == pytest.approx(L - losses.min(), rel=1e-12)
    one = smoothness_summary(smoothness(_quadratic, theta, g, etas[:1]))[0]
    assert one == pytest.approx(L - losses[0], rel=1e-12) and one > 0


def test_smoothness_summary_edge_cases():
    assert all(math.isnan(v) for v in smoothness_summary(Smoothness(1.0, 2.0, [])))
    # η = 0 is a point of the range but no distance moved: left out of β
    variation, predictiveness, beta = smoothness_summary(Smoothness(1.0, 2.0, [(0.0, 1.0, 0.0), (0.5, 3.0, 4.0)]))
    assert (variation, predictiveness, beta) == (2.0, 4.0, 4.0)
    assert math.isnan(smoothness_summary(Smoothness(1.0, 2.0, [(0.0, 1.0, 0.0)]))[2])
    assert math.isnan(smoothness_summary(Smoothness(1.0, 0.0, [(0.1, 1.0, 0.0)]))[2])
    assert smoothness_summary(Smoothness(1.0, 2.0, [(0.1, math.inf, 1.0)]))[0] == math.inf
    # probe_step's rows have a leading multiple: the summary reads the last three entries
    assert smoothness_summary(Smoothness(1.0, 2.0, [(5.0, 0.5, 3.0, 4.0)])) == (2.0, 4.0, 4.0)


def test_smoothness_reads_the_gradient_before_the_next_call_and_keeps_theta():
    """loss_grad_fn may hand back one buffer it overwrites each call (as a model's gradient buffer)."""
    buf = np.empty(len(EIGS))

    def shared(theta):
        loss, grad = _quadratic(theta)
        buf[...] = grad
        return loss, buf

    theta = np.array([1.0, -0.5, 0.3, 0.2])
    before = theta.copy()
    etas = [0.05, 0.1, 0.2]
    _, g, _, diffs = _closed_form(theta, etas)
    s = smoothness(shared, theta, g.copy(), etas)
    np.testing.assert_allclose([r[2] for r in s.rows], diffs, rtol=1e-12)
    np.testing.assert_array_equal(theta, before)


# -- generic: gradient_change on a two-block analytic function -------------------------------------------------

def _three_vectors(theta):
    """L(a, w, v) = Σ_j a_j w_j v_j over three 2-vectors laid out as θ = (a, w, v): ∇ = (w⊙v, a⊙v, a⊙w)."""
    a, w, v = theta[0:2], theta[2:4], theta[4:6]
    return np.concatenate([w * v, a * v, a * w])


def test_gradient_change_against_hand_computation():
    theta0 = np.array([1.0, 2.0, 3.0, -1.0, 2.0, 1.0])  # a0, w0, v0
    theta1 = np.array([2.0, 2.0, 3.0, 1.0, 5.0, 5.0])  # a1, w1, v1 (v's change is above both blocks)
    before0, before1 = theta0.copy(), theta1.copy()
    calls = []

    def grad_fn(theta):
        calls.append(theta.copy())
        return _three_vectors(theta)

    # block w: below = a; G = a0⊙v0 = (2, 2), G' = a1⊙v0 = (4, 2)
    # block v: below = (a, w) as an index array; G = a0⊙w0 = (3, -2), G' = a1⊙w1 = (6, 2)
    blocks = [(slice(0, 2), slice(2, 4)), (np.array([0, 1, 2, 3]), slice(4, 6))]
    res = gradient_change(grad_fn, theta0, theta1, blocks)
    expected = [(2.0, 12 / math.sqrt(8 * 20), math.sqrt(8)), (5.0, 14 / math.sqrt(13 * 40), math.sqrt(13))]
    for got, want in zip(res, expected):
        assert got == pytest.approx(want, rel=1e-14)
    # θ' of each block: theta1 below, theta0 on the block and above
    np.testing.assert_array_equal(calls[1], [2.0, 2.0, 3.0, -1.0, 2.0, 1.0])
    np.testing.assert_array_equal(calls[2], [2.0, 2.0, 3.0, 1.0, 2.0, 1.0])
    np.testing.assert_array_equal(theta0, before0)
    np.testing.assert_array_equal(theta1, before1)
    # the gradient at theta0, when given, is not computed again
    calls.clear()
    assert gradient_change(grad_fn, theta0, theta1, blocks, g0=_three_vectors(theta0)) == res
    assert len(calls) == 2


def test_gradient_change_is_zero_when_nothing_below_moved():
    theta0 = np.array([1.0, 2.0, 3.0, -1.0, 2.0, 1.0])
    theta1 = np.array([1.0, 2.0, 4.0, 7.0, 2.0, 1.0])  # only w moved: nothing below w changed, a's block did
    res = gradient_change(_three_vectors, theta0, theta1, [(slice(0, 2), slice(2, 4)), (slice(0, 4), slice(4, 6))])
    assert res[0] == pytest.approx((0.0, 1.0, math.sqrt(8)), rel=1e-15, abs=0)
    assert res[1][0] > 0 and res[1][1] < 1


def test_gradient_change_cosine_of_a_zero_gradient_is_nan():
    theta0 = np.array([0.0, 0.0, 3.0, -1.0, 2.0, 1.0])  # a = 0: G of block v (a⊙w) is 0
    theta1 = np.array([1.0, 1.0, 3.0, -1.0, 2.0, 1.0])
    (l2, cos, norm),  = gradient_change(_three_vectors, theta0, theta1, [(slice(0, 4), slice(4, 6))])
    assert norm == 0.0 and l2 == pytest.approx(math.sqrt(10)) and math.isnan(cos)


# -- probe_step on a small MLP ---------------------------------------------------------------------------------

def _make(bn, bn_impl="fused"):
    """A deterministic float64 MLP with non-trivial gamma, beta and biases."""
    model = MLP(N_IN, HIDDEN, N_OUT, rng=np.random.default_rng(0), activation="sigmoid", bn=bn, dtype=np.float64,
                bn_impl=bn_impl)
    rng = np.random.default_rng(1)
    for k, p in model.params.items():
        if k.endswith(".gamma"):
            p[...] = rng.uniform(0.5, 1.5, p.shape)
        elif k.endswith((".beta", ".b")):
            p[...] = 0.3 * rng.standard_normal(p.shape)
    return model


def _clone(model, bn, bn_impl="fused"):
    """A fresh copy with the same parameters and running averages. (copy.deepcopy would not do: it copies every
    view into the flat buffers as an array of its own, so the copy's flat buffer no longer holds its parameters.)"""
    c = _make(bn, bn_impl)
    c.flat.params[...] = model.flat.params
    c.set_buffers(model.get_buffers())
    return c


def _batch(seed=2):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((BATCH, N_IN)), rng.integers(0, N_OUT, BATCH)


def _loss_grad(model, theta, xb, yb):
    """The direct computation: parameters set to theta, one "train" forward and backward."""
    model.flat.params[...] = theta
    loss, d, _ = softmax_cross_entropy(model.forward(xb, "train"), yb)
    model.backward(d)
    return loss, model.flat.grads.copy()


def _opt(model, name, **kw):
    return Optimizer(model.params, model.grads, name, flat=model.flat, **kw)


def _state(model, opt):
    return (model.flat.params.copy(), model.flat.grads.copy(), model.get_buffers(), opt.t,
            [[a.copy() for a in s] for s in opt.state])


def _assert_same_state(a, b):
    np.testing.assert_array_equal(a[0], b[0])  # parameters, bit for bit (nan == nan)
    np.testing.assert_array_equal(a[1], b[1])  # what opt.step left in the gradient buffer
    assert a[2].keys() == b[2].keys()
    for k in a[2]:
        np.testing.assert_array_equal(a[2][k], b[2][k])
    assert a[3] == b[3]
    for sa, sb in zip(a[4], b[4]):
        for x, y in zip(sa, sb):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("bn", ["none", "before", "after"])
def test_probe_step_ics_equals_direct_computation(bn):
    model = _make(bn)
    ref = _clone(model, bn)  # θ_t
    xb, yb = _batch()
    loss, correct, rows, _ = probe_step(model, _opt(model, "sgd"), xb, yb, LR, MULTIPLES, smooth=False)

    theta0 = ref.flat.params.copy()
    stepped = _clone(ref, bn)
    assert train_step(stepped, _opt(stepped, "sgd"), xb, yb, LR) == (loss, correct)
    theta1 = stepped.flat.params.copy()
    np.testing.assert_array_equal(model.flat.params, theta1)
    _, g0 = _loss_grad(_clone(ref, bn), theta0, xb, yb)

    # "below" written out from the layer list: every parameter of the layers before the weight layer
    names = [n for n, _ in ref.layers]
    keys = list(ref.params)
    sizes = [ref.params[k].size for k in keys]
    starts = np.cumsum([0, *sizes])
    weight_layers = [n for n, layer in ref.layers if "W" in layer.params][1:]
    assert [r[0] for r in rows] == weight_layers == ["dense2", "out"]
    for name, l2, cos, norm_g in rows:
        i = names.index(name)
        mixed = theta0.copy()
        for k, s, e in zip(keys, starts[:-1], starts[1:]):
            if names.index(k.split(".")[0]) < i:
                mixed[s:e] = theta1[s:e]
        own = keys.index(f"{name}.W")
        sl = slice(starts[own], starts[own + 1])
        _, g1 = _loss_grad(_clone(ref, bn), mixed, xb, yb)
        G, G1 = g0[sl], g1[sl]
        assert l2 == pytest.approx(np.linalg.norm(G - G1), rel=1e-12, abs=1e-15)
        assert cos == pytest.approx(G @ G1 / (np.linalg.norm(G) * np.linalg.norm(G1)), rel=1e-12)
        assert norm_g == pytest.approx(np.linalg.norm(G), rel=1e-12)
        assert l2 > 1e-6  # the lower layers moved: the gradient changed


@pytest.mark.parametrize("bn", ["none", "before", "after"])
def test_probe_step_smoothness_equals_direct_evaluation(bn):
    model = _make(bn)
    ref = _clone(model, bn)
    xb, yb = _batch()
    loss, _, rows, s = probe_step(model, _opt(model, "sgd"), xb, yb, LR, MULTIPLES, ics=False)
    assert rows == []
    theta0 = ref.flat.params.copy()
    base, g = _loss_grad(_clone(ref, bn), theta0, xb, yb)
    assert s.base_loss == loss == base
    assert s.grad_norm == pytest.approx(np.linalg.norm(g), rel=1e-12)
    assert [r[:2] for r in s.rows] == [(m, m * LR) for m in MULTIPLES]
    for m, eta, got_loss, got_diff in s.rows:
        want_loss, g_eta = _loss_grad(_clone(ref, bn), theta0 - eta * g, xb, yb)
        assert got_loss == pytest.approx(want_loss, rel=1e-12)
        assert got_diff == pytest.approx(np.linalg.norm(g - g_eta), rel=1e-12)
    variation, predictiveness, beta = smoothness_summary(s)
    assert variation > 0 and predictiveness > 0 and beta > 0


TRAJECTORY = [("none", "sgd", {}), ("before", "sgd", {}), ("after", "sgd", {}), ("none", "adam", {}),
              ("before", "adam", {}), ("after", "adam", {}), ("before", "momentum", {"weight_decay": 0.01}),
              ("before", "rmsprop", {})]


@pytest.mark.parametrize("bn,opt_name,kw", TRAJECTORY)
@pytest.mark.parametrize("bn_impl", ["fused", "textbook"])
def test_probe_step_leaves_the_trajectory_of_train_step(bn, opt_name, kw, bn_impl):
    a, b = _make(bn, bn_impl), _make(bn, bn_impl)
    opt_a, opt_b = _opt(a, opt_name, **kw), _opt(b, opt_name, **kw)
    lr = 0.01 if opt_name in ("adam", "rmsprop") else LR
    data = [_batch(seed) for seed in range(30)]
    for xb, yb in data[:3]:  # optimizer state and running averages away from their initial values
        train_step(a, opt_a, xb, yb, lr)
        train_step(b, opt_b, xb, yb, lr)
    for xb, yb in data[3:6]:
        out = probe_step(a, opt_a, xb, yb, lr, MULTIPLES)
        assert out[:2] == train_step(b, opt_b, xb, yb, lr)
        assert len(out[2]) == 2 and len(out[3].rows) == len(MULTIPLES)
        _assert_same_state(_state(a, opt_a), _state(b, opt_b))
    for xb, yb in data[6:26]:
        assert train_step(a, opt_a, xb, yb, lr) == train_step(b, opt_b, xb, yb, lr)
    _assert_same_state(_state(a, opt_a), _state(b, opt_b))
    assert not np.array_equal(a.flat.params, _make(bn, bn_impl).flat.params)


@pytest.mark.parametrize("bn", ["none", "before", "after"])
def test_probe_step_with_a_non_finite_loss_skips_the_probes(bn):
    a, b = _make(bn), _make(bn)
    opt_a, opt_b = _opt(a, "momentum"), _opt(b, "momentum")
    xb, yb = _batch()
    train_step(a, opt_a, xb, yb, LR)
    train_step(b, opt_b, xb, yb, LR)
    params = a.flat.params.copy()
    bad = xb.copy()
    bad[0, 0] = np.nan
    with np.errstate(invalid="ignore"):
        loss, correct, rows, s = probe_step(a, opt_a, bad, yb, LR, MULTIPLES)
        loss_b, correct_b = train_step(b, opt_b, bad, yb, LR)
    assert math.isnan(loss) and math.isnan(loss_b) and correct == correct_b
    assert rows == [] and s is None
    np.testing.assert_array_equal(a.flat.params, params)
    _assert_same_state(_state(a, opt_a), _state(b, opt_b))


def test_probe_step_ics_is_zero_when_the_lower_layers_did_not_move():
    """lr = 0: θ_{t+1} = θ_t, so G' is G recomputed at the same parameters (BN before: no dense biases)."""
    model = _make("before")
    xb, yb = _batch()
    _, _, rows, s = probe_step(model, _opt(model, "sgd"), xb, yb, 0.0, MULTIPLES)
    assert [r[0] for r in rows] == ["dense2", "out"]
    for _, l2, cos, norm_g in rows:
        assert all(math.isfinite(v) for v in (l2, cos, norm_g))
        assert l2 == 0.0 and cos == pytest.approx(1.0, abs=1e-15) and norm_g > 0
    assert all(r[2] == s.base_loss and r[3] == 0.0 for r in s.rows)  # η = 0 for every multiple


def test_probe_step_switches_and_float32():
    """ics/smooth off: plain train_step. float32: the same state as train_step, float64 results."""
    a, b = (MLP(N_IN, HIDDEN, N_OUT, rng=np.random.default_rng(0), bn="before") for _ in range(2))
    opt_a, opt_b = _opt(a, "adam"), _opt(b, "adam")
    xb, yb = (v.astype(np.float32) if v.dtype.kind == "f" else v for v in _batch())
    assert probe_step(a, opt_a, xb, yb, 0.01, MULTIPLES, ics=False, smooth=False)[2:] == ([], None)
    train_step(b, opt_b, xb, yb, 0.01)
    _, _, rows, s = probe_step(a, opt_a, xb, yb, 0.01, MULTIPLES)
    train_step(b, opt_b, xb, yb, 0.01)
    _assert_same_state(_state(a, opt_a), _state(b, opt_b))
    assert all(type(v) is float and math.isfinite(v) for r in rows for v in r[1:])
    assert all(type(v) is float for r in s.rows for v in r)


def test_probe_step_on_a_convnet_measures_every_weight_layer():
    def make():
        return ConvNet((1, 6, 6), [ConvSpec(2, kernel=3), ConvSpec(3, kernel=3)], [4], 3,
                       rng=np.random.default_rng(0), activation="tanh", bn="before", dtype=np.float64)

    a, b = make(), make()
    opt_a, opt_b = _opt(a, "momentum"), _opt(b, "momentum")
    rng = np.random.default_rng(3)
    xb, yb = rng.standard_normal((BATCH, 36)), rng.integers(0, 3, BATCH)
    _, _, rows, s = probe_step(a, opt_a, xb, yb, 0.1, MULTIPLES)
    train_step(b, opt_b, xb, yb, 0.1)
    assert [r[0] for r in rows] == [n for n, _, _ in ics_blocks(a)] == ["conv2", "dense1", "out"]
    assert all(r[1] > 0 for r in rows) and len(s.rows) == len(MULTIPLES)
    _assert_same_state(_state(a, opt_a), _state(b, opt_b))
