"""Tests for bncli/core/model.py: whole-network gradients, BN placements, eval mode, population stats, folding,
dtype stability and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from bncli.core.batchnorm import BatchNorm, BatchOfOneError
from bncli.core.layers import Activation, Dense, softmax_cross_entropy
from bncli.core.model import BN_IMPLS, MLP, PLACEMENTS
from bncli.core.noise import NoisyShift
from bncli.core.optim import OPTIMIZERS, Optimizer, lr_at

from .gradcheck import numerical_grad, rel_error

ACTIVATIONS = ("relu", "sigmoid", "tanh", "identity")
NET_TOL = 1e-6
RELU_MARGIN = 1e-3  # every relu input at least this far from 0, so a 1e-6 perturbation never crosses the kink


def _activation_inputs(model, X):
    """Inputs of every Activation layer for a batch-statistics forward (same values as train mode, no buffer update)."""
    out, x = [], X
    with model.noise_always():
        for _, layer in model.layers:
            if isinstance(layer, Activation):
                out.append(x.copy())
            x = layer.forward(x, "batch")
    return out


def _randomize_affine(model, rng):
    """Non-trivial gamma, beta and biases, so the check also covers the gamma/beta/bias paths (gamma=1 hides bugs)."""
    for k, p in model.params.items():
        if k.endswith(".gamma"):
            p[...] = rng.uniform(0.5, 1.5, p.shape)
        elif k.endswith(".beta") or k.endswith(".b"):
            p[...] = 0.3 * rng.standard_normal(p.shape)


def _net_problem(bn, activation, n=8, bn_impl="fused"):
    """Deterministic model + data; for relu, the first seed whose relu inputs all clear RELU_MARGIN."""
    for seed in range(100):
        rng = np.random.default_rng(seed)
        model = MLP(6, [5, 4], 3, rng=rng, activation=activation, bn=bn, dtype=np.float64, bn_impl=bn_impl)
        _randomize_affine(model, rng)
        model.draw_noise(rng)  # bn="noisy": a non-trivial draw, held fixed through the check
        X = rng.standard_normal((n, 6))
        y = rng.integers(0, 3, n)
        R = rng.standard_normal((n, 3))
        if activation != "relu" or min(np.min(np.abs(a)) for a in _activation_inputs(model, X)) > RELU_MARGIN:
            return model, X, y, R
    raise AssertionError("no seed with relu inputs away from the kink")  # pragma: no cover


def _structurally_zero(bn, activation):
    """Parameters whose gradient is exactly 0: with identity activations, a shift feeding (linearly) into the next
    BN is cancelled by that BN's mean subtraction."""
    if activation != "identity":
        return set()
    return {"before": {"bn1.beta"}, "noisy": {"bn1.beta"}, "after": {"dense1.b", "bn1.beta", "dense2.b"}}.get(bn, set())


def _net_gradcheck(model, X, loss_and_dlogits, zero=frozenset()):
    loss, dlogits = loss_and_dlogits(model.forward(X, "train"))
    model.backward(dlogits)
    analytic = {k: g.copy() for k, g in model.grads.items()}
    errors = {}
    for k, p in model.params.items():
        num = numerical_grad(lambda: loss_and_dlogits(model.forward(X, "train"))[0], p)
        if k in zero:  # both must vanish (the numerical one is rounding noise ~1e-9)
            assert np.max(np.abs(num)) < 1e-7 and np.max(np.abs(analytic[k])) < 1e-12, k
            continue
        assert np.max(np.abs(num)) > 1e-6, f"{k}: numerical gradient ~0, the check would be vacuous"
        errors[k] = rel_error(analytic[k], num)
    return errors


# -- 3. whole-network gradient checks ----------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("bn", PLACEMENTS)
def test_mlp_gradcheck_cross_entropy(bn, activation):
    model, X, y, _ = _net_problem(bn, activation)
    expected_keys = {"dense1.W", "dense2.W", "out.W", "out.b"}
    expected_keys |= {"bn1.gamma", "bn1.beta", "bn2.gamma", "bn2.beta"} if bn != "none" else set()
    expected_keys |= {"dense1.b", "dense2.b"} if bn not in ("before", "noisy") else set()
    assert set(model.params) == expected_keys == set(model.grads)

    def ce(logits):
        loss, d, _ = softmax_cross_entropy(logits, y)
        return loss, d

    errors = _net_gradcheck(model, X, ce, _structurally_zero(bn, activation))
    assert max(errors.values()) < NET_TOL, errors


@pytest.mark.parametrize("bn_impl", BN_IMPLS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("bn", PLACEMENTS)
def test_mlp_gradcheck_random_upstream(bn, activation, bn_impl):
    model, X, _, R = _net_problem(bn, activation, bn_impl=bn_impl)
    errors = _net_gradcheck(model, X, lambda logits: (np.sum(logits * R), R.copy()),
                            _structurally_zero(bn, activation))
    assert max(errors.values()) < NET_TOL, errors


def test_mlp_layer_order_per_placement():
    rng = np.random.default_rng(0)
    kinds = {Dense: "D", BatchNorm: "B", Activation: "A", NoisyShift: "N"}
    order = {bn: "".join(kinds[type(l)] for _, l in MLP(3, [4, 4], 2, rng=rng, bn=bn).layers) for bn in PLACEMENTS}
    assert order == {"none": "DADAD", "before": "DBADBAD", "after": "DABDABD", "noisy": "DBNADBNAD"}
    names = [n for n, _ in MLP(3, [4, 4], 2, rng=rng, bn="noisy").layers]
    assert names == ["dense1", "bn1", "noise1", "act1", "dense2", "bn2", "noise2", "act2", "out"]


def test_unknown_placement_raises():
    with pytest.raises(ValueError, match="placement"):
        MLP(3, [4], 2, rng=np.random.default_rng(0), bn="both")
    with pytest.raises(ValueError, match="implementation"):
        MLP(3, [4], 2, rng=np.random.default_rng(0), bn="before", bn_impl="naive")


@pytest.mark.parametrize("bn", PLACEMENTS)
def test_flat_buffers_and_decay_mask(bn):
    """Every parameter and gradient is a view into model.flat, and the weight-decay mask is 1 exactly on the entries
    of the weight matrices (the ".W" keys, which a dict-based Optimizer decays)."""
    model = MLP(6, [5, 4], 3, rng=np.random.default_rng(0), bn=bn)
    flat = model.flat
    assert flat.params.dtype == flat.grads.dtype == flat.decay_mask.dtype == model.dtype
    assert flat.params.size == sum(p.size for p in model.params.values())
    for k in model.params:
        assert np.shares_memory(model.params[k], flat.params) and np.shares_memory(model.grads[k], flat.grads), k
    flat.params[...] = np.arange(flat.params.size)  # each entry now holds its own index in the buffer
    for k, p in model.params.items():
        np.testing.assert_array_equal(flat.decay_mask[p.ravel().astype(int)], float(k.endswith(".W")), err_msg=k)
    assert flat.decay_mask.sum() == sum(p.size for k, p in model.params.items() if k.endswith(".W"))


# -- 5. batch of one through the model ---------------------------------------------------------------------------
@pytest.mark.parametrize("bn", ["before", "after"])
def test_mlp_batch_of_one(bn):
    rng = np.random.default_rng(1)
    model = MLP(6, [5], 3, rng=rng, bn=bn, dtype=np.float64)
    x1 = rng.standard_normal((1, 6))
    with pytest.raises(BatchOfOneError, match=r"got 1\b"):
        model.forward(x1, "train")
    out = model.forward(x1, "eval")
    assert out.shape == (1, 3) and np.all(np.isfinite(out))


# -- 6. eval mode: single examples == batched --------------------------------------------------------------------
def _train_briefly(model, X, y, rng, steps=15, batch=16, name="adam", lr=0.01):
    opt = Optimizer(model.params, model.grads, name)
    for _ in range(steps):
        idx = rng.choice(len(X), batch, replace=False)
        _, d, _ = softmax_cross_entropy(model.forward(X[idx], "train"), y[idx])
        model.backward(d)
        opt.step(lr)


@pytest.mark.parametrize("bn", ["before", "after"])
def test_eval_single_examples_equal_batched_eval(bn):
    rng = np.random.default_rng(6)
    model = MLP(6, [5, 4], 3, rng=rng, bn=bn, dtype=np.float32)
    X = (2.0 * rng.standard_normal((40, 6)) + 1.0).astype(np.float32)
    y = rng.integers(0, 3, 40)
    _train_briefly(model, X, y, rng)
    buffers = model.get_buffers()
    assert max(np.max(np.abs(v)) for k, v in buffers.items() if k.endswith("running_mean")) > 0.05
    assert max(np.max(np.abs(v - 1)) for k, v in buffers.items() if k.endswith("running_var")) > 0.05
    batched = model.forward(X, "eval")
    singles = np.concatenate([model.forward(X[i:i + 1], "eval") for i in range(len(X))])
    assert batched.dtype == singles.dtype == np.float32
    np.testing.assert_allclose(singles, batched, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(singles.argmax(axis=1), batched.argmax(axis=1))
    # eval mode does not move the running statistics
    after = model.get_buffers()
    for k in buffers:
        np.testing.assert_array_equal(after[k], buffers[k])
    # ... and chunked inference agrees too
    np.testing.assert_allclose(model.logits(X, chunk=7), batched, rtol=1e-5, atol=1e-6)


def test_get_set_buffers_roundtrip_and_copies():
    rng = np.random.default_rng(7)
    model = MLP(4, [3], 2, rng=rng, bn="before", dtype=np.float64)
    buf = model.get_buffers()
    assert set(buf) == {"bn1.running_mean", "bn1.running_var"}
    buf["bn1.running_mean"][...] = 5.0  # a copy: the model is untouched
    np.testing.assert_array_equal(model.bn_layers()[0][1].buffers["running_mean"], 0.0)
    model.set_buffers(buf)
    np.testing.assert_array_equal(model.bn_layers()[0][1].buffers["running_mean"], 5.0)


# -- 8. C7: the bias before BN is useless ------------------------------------------------------------------------
def test_c7_bias_before_bn_has_zero_gradient_and_no_effect():
    rng = np.random.default_rng(8)
    model = MLP(6, [5, 4], 3, rng=rng, bn="before", bias_with_bn=True, activation="tanh", dtype=np.float64)
    _randomize_affine(model, rng)
    X = rng.standard_normal((10, 6))
    y = rng.integers(0, 3, 10)
    logits = model.forward(X, "train")
    _, d, _ = softmax_cross_entropy(logits, y)
    model.backward(d)
    w_scale = max(np.max(np.abs(model.grads[k])) for k in ("dense1.W", "dense2.W"))
    assert w_scale > 1e-3
    for k in ("dense1.b", "dense2.b"):
        assert np.max(np.abs(model.grads[k])) < 1e-12 * w_scale, k
    assert np.max(np.abs(model.grads["out.b"])) > 1e-3  # the output bias is not behind a BN
    for k in ("dense1.b", "dense2.b"):
        model.params[k] += rng.standard_normal(model.params[k].shape) * 3.0
    np.testing.assert_allclose(model.forward(X, "train"), logits, rtol=1e-10, atol=1e-12)


def test_c7_control_bias_matters_without_bn():
    """The same perturbation without BN does change the logits (so the C7 check can fail)."""
    rng = np.random.default_rng(8)
    model = MLP(6, [5, 4], 3, rng=rng, bn="none", activation="tanh", dtype=np.float64)
    X = rng.standard_normal((10, 6))
    logits = model.forward(X, "train")
    model.params["dense1.b"] += 1.0
    assert np.max(np.abs(model.forward(X, "train") - logits)) > 1e-3


@pytest.mark.parametrize("bn, has_bias", [("before", False), ("none", True), ("after", True)])
def test_dense_bias_presence(bn, has_bias):
    model = MLP(6, [5, 4], 3, rng=np.random.default_rng(0), bn=bn)
    assert ("dense1.b" in model.params) == has_bias
    assert ("dense2.b" in model.params) == has_bias
    assert "out.b" in model.params
    if bn == "before":
        assert "dense1.b" in MLP(6, [5, 4], 3, rng=np.random.default_rng(0), bn=bn, bias_with_bn=True).params


# -- 11. population statistics -----------------------------------------------------------------------------------
def test_population_stats_one_hidden_layer():
    rng = np.random.default_rng(11)
    model = MLP(6, [5], 3, rng=rng, bn="before", dtype=np.float64)
    X = rng.standard_normal((50, 6)) * 2 + 0.5
    m = 8  # 6 full batches; the last 2 samples are not used
    before = model.get_buffers()
    pop = model.population_stats(X, m)
    H = X @ model.params["dense1.W"]
    batches = [H[i * m:(i + 1) * m] for i in range(50 // m)]
    exp_mean = np.mean([b.mean(axis=0) for b in batches], axis=0)
    exp_var = m / (m - 1) * np.mean([b.var(axis=0) for b in batches], axis=0)
    assert set(pop) == {"bn1.running_mean", "bn1.running_var"}
    np.testing.assert_allclose(pop["bn1.running_mean"], exp_mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(pop["bn1.running_var"], exp_var, rtol=1e-12)
    # the stats of all 50 samples are different: the remainder really is dropped / variance is per batch
    assert not np.allclose(exp_var, H.var(axis=0, ddof=1), rtol=1e-6)
    after = model.get_buffers()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])


def _reference_batch_forward(model, X, activation):
    """Independent bn='before' forward with batch statistics; returns the pre-BN activations of each layer."""
    act = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}[activation]
    pre, x, i = [], X, 1
    while f"bn{i}.gamma" in model.params:
        h = x @ model.params[f"dense{i}.W"]
        pre.append(h)
        eps = dict(model.bn_layers())[f"bn{i}"].eps
        xh = (h - h.mean(axis=0)) / np.sqrt(h.var(axis=0) + eps)
        x = act(model.params[f"bn{i}.gamma"] * xh + model.params[f"bn{i}.beta"])
        i += 1
    return pre


def test_population_stats_two_hidden_layers_use_batch_statistics_upstream():
    rng = np.random.default_rng(12)
    model = MLP(6, [5, 4], 3, rng=rng, bn="before", activation="tanh", dtype=np.float64)
    _randomize_affine(model, rng)
    X = rng.standard_normal((36, 6))
    m = 6
    pop = model.population_stats(X, m)
    per_batch = [_reference_batch_forward(model, X[i * m:(i + 1) * m], "tanh") for i in range(6)]
    for j in range(2):
        hs = [pb[j] for pb in per_batch]
        np.testing.assert_allclose(pop[f"bn{j + 1}.running_mean"], np.mean([h.mean(0) for h in hs], 0), rtol=1e-11,
                                   atol=1e-14)
        np.testing.assert_allclose(pop[f"bn{j + 1}.running_var"],
                                   m / (m - 1) * np.mean([h.var(0) for h in hs], 0), rtol=1e-11)


@pytest.mark.parametrize("n, m", [(10, 1), (5, 8)])
def test_population_stats_rejects_degenerate_batches(n, m):
    model = MLP(3, [2], 2, rng=np.random.default_rng(0), bn="before", dtype=np.float64)
    with pytest.raises(ValueError):
        model.population_stats(np.ones((n, 3)), m)


# -- 12. folding -------------------------------------------------------------------------------------------------
def _folded_forward(folded, X):
    acts = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh,
            "identity": lambda z: z, None: lambda z: z}
    for W, b, act in folded:
        X = acts[act](X @ W + b)
    return X


@pytest.mark.parametrize("bias_with_bn", [False, True])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_folded_layers_match_eval_mode(activation, bias_with_bn):
    rng = np.random.default_rng(13)
    model = MLP(6, [5, 4], 3, rng=rng, bn="before", activation=activation, bias_with_bn=bias_with_bn,
                dtype=np.float64)
    X = rng.standard_normal((30, 6)) * 2 + 1
    y = rng.integers(0, 3, 30)
    _train_briefly(model, X, y, rng, steps=10, name="sgd", lr=0.1)
    _randomize_affine(model, rng)
    folded = model.folded_layers()
    assert len(folded) == 3 and [a for _, _, a in folded] == [activation, activation, None]
    assert [W.shape for W, _, _ in folded] == [(6, 5), (5, 4), (4, 3)]
    np.testing.assert_allclose(_folded_forward(folded, X), model.forward(X, "eval"), rtol=1e-12, atol=1e-12)
    # and it is not the train-mode (batch statistics) output
    assert not np.allclose(_folded_forward(folded, X), model.forward(X, "batch"), rtol=1e-6)


def test_folded_layers_float32_and_no_bn():
    rng = np.random.default_rng(14)
    X = rng.standard_normal((12, 6)).astype(np.float32)
    for bn in ("before", "none"):
        model = MLP(6, [5], 3, rng=rng, bn=bn, dtype=np.float32)
        _train_briefly(model, X, rng.integers(0, 3, 12), rng, steps=5, batch=6)
        folded = model.folded_layers()
        assert all(W.dtype == b.dtype == np.float32 for W, b, _ in folded)
        np.testing.assert_allclose(_folded_forward(folded, X), model.forward(X, "eval"), rtol=1e-5, atol=1e-6)


def test_fold_after_raises():
    model = MLP(6, [5], 3, rng=np.random.default_rng(0), bn="after")
    with pytest.raises(ValueError, match="fold"):
        model.folded_layers()


# -- 14. dtype stability -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("bn", PLACEMENTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_through_forward_backward_step(dtype, bn, name):
    rng = np.random.default_rng(15)
    model = MLP(6, [5, 4], 3, rng=rng, bn=bn, dtype=dtype)
    X = rng.standard_normal((8, 6)).astype(dtype)
    y = rng.integers(0, 3, 8)
    opt = Optimizer(model.params, model.grads, name, weight_decay=1e-4)
    ids = {k: id(p) for k, p in model.params.items()}
    for step in range(2):
        logits = model.forward(X, "train")
        assert logits.dtype == dtype
        _, d, _ = softmax_cross_entropy(logits, y)
        assert d.dtype == dtype
        model.backward(d)
        opt.step(lr_at(step, 10, 0.01, "cosine", warmup=1))
        model.draw_noise(rng)
    assert all(v.dtype == dtype for _, n in model.noise_layers() for v in (n.scale, n.shift))
    for k in model.params:
        assert model.params[k].dtype == dtype, k
        assert model.grads[k].dtype == dtype, k
        assert id(model.params[k]) == ids[k], f"{k} was rebound instead of updated in place"
    assert all(s.dtype == dtype for st in opt.state for s in st)
    for k, v in model.get_buffers().items():
        assert v.dtype == dtype, k
    assert model.forward(X, "eval").dtype == dtype
    assert model.forward(X[:1], "eval").dtype == dtype
    if bn != "none":
        assert all(v.dtype == dtype for v in model.population_stats(X, 4).values())


# -- 15. determinism ---------------------------------------------------------------------------------------------
def test_same_seed_same_weights():
    a = MLP(6, [5, 4], 3, rng=np.random.default_rng(3))
    b = MLP(6, [5, 4], 3, rng=np.random.default_rng(3))
    c = MLP(6, [5, 4], 3, rng=np.random.default_rng(4))
    assert set(a.params) == set(b.params)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["dense1.W"], c.params["dense1.W"])


@pytest.mark.parametrize("init", ["he", "glorot", "normal"])
def test_weights_shared_across_placements(init):
    models = {bn: MLP(6, [5, 4], 3, rng=np.random.default_rng(3), bn=bn, init=init) for bn in PLACEMENTS}
    for k in ("dense1.W", "dense2.W", "out.W"):
        for bn in PLACEMENTS:
            np.testing.assert_array_equal(models[bn].params[k], models["none"].params[k])


# -- 16. the fast path is the plain path -------------------------------------------------------------------------
def _without_in_place(model):
    """Undo MLP's in-place options on ``model``: BN layers that neither center their input nor write dx over dy in
    place, activations on fresh arrays. Parameters and statistics stay where they are."""
    start = 0
    for i, (name, layer) in enumerate(model.layers):
        if isinstance(layer, BatchNorm):
            dim = layer.params["gamma"].size
            state = (model._running[:, start:start + dim], model._batch_stats[:, start:start + dim])
            plain = BatchNorm(dim, decay=layer.decay, eps=layer.eps, dtype=model.dtype, fused=True, state=state)
            plain.params, plain.grads = layer.params, layer.grads
            model.layers[i] = (name, plain)
            start += dim
        elif isinstance(layer, (Activation, NoisyShift)):
            layer.inplace = False


def _train(model, opt, X, y, steps=5, batch=8):
    losses, noise_rng = [], np.random.default_rng(99)  # the same noise draws for every model (bn="noisy")
    for step in range(steps):
        model.draw_noise(noise_rng)
        xb, yb = X[batch * step:batch * (step + 1)], y[batch * step:batch * (step + 1)]
        loss, d, _ = softmax_cross_entropy(model.forward(xb, "train"), yb)
        model.backward(d)
        opt.step(0.1)
        losses.append(loss)
    return losses


@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh"])
@pytest.mark.parametrize("bn", PLACEMENTS)
def test_in_place_layers_change_no_bit(bn, activation):
    """MLP's in-place activations and BN layers give bit-identical parameters, gradients, buffers, losses and eval
    outputs to layers that work on fresh arrays, over several steps."""
    rng = np.random.default_rng(16)
    X, y = rng.standard_normal((40, 6)).astype(np.float32), rng.integers(0, 3, 40)
    fast = MLP(6, [7, 5], 3, rng=np.random.default_rng(1), activation=activation, bn=bn)
    plain = MLP(6, [7, 5], 3, rng=np.random.default_rng(1), activation=activation, bn=bn)
    _without_in_place(plain)
    X0 = X.copy()
    histories = [_train(m, Optimizer(m.params, m.grads, "momentum", flat=m.flat), X, y) for m in (fast, plain)]
    np.testing.assert_array_equal(X, X0)  # the input batch is never overwritten
    assert histories[0] == histories[1]
    for k in fast.params:
        np.testing.assert_array_equal(fast.params[k], plain.params[k], err_msg=k)
        np.testing.assert_array_equal(fast.grads[k], plain.grads[k], err_msg=k)
    fb, pb = fast.get_buffers(), plain.get_buffers()
    assert set(fb) == set(pb) and (bn == "none") == (not fb)
    for k in fb:
        np.testing.assert_array_equal(fb[k], pb[k], err_msg=k)
        if k.endswith("running_mean"):  # the statistics did move, so the comparison is not of initial values
            assert np.all(fb[k] != 0), k
    np.testing.assert_array_equal(fast.forward(X, "eval"), plain.forward(X, "eval"))


def _assert_close(actual, desired, what, rtol=1e-11):
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * np.max(np.abs(desired)), err_msg=what)


@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh"])
@pytest.mark.parametrize("bn", ["before", "after", "noisy"])
def test_textbook_and_fused_mlp_train_alike(bn, activation):
    """The same MLP with textbook and with fused BN layers, trained a few steps (momentum, weight decay, flat
    update) in float64: losses, parameters, gradients, running and population statistics, eval outputs and the
    folded layers agree to rounding."""
    rng = np.random.default_rng(18)
    X, y = rng.standard_normal((48, 6)) * 2 + 1, rng.integers(0, 3, 48)
    models = {impl: MLP(6, [7, 5], 3, rng=np.random.default_rng(2), activation=activation, bn=bn,
                        dtype=np.float64, bn_impl=impl) for impl in BN_IMPLS}
    losses = {impl: _train(m, Optimizer(m.params, m.grads, "momentum", weight_decay=1e-2, flat=m.flat), X, y, 6)
              for impl, m in models.items()}
    fused, textbook = models["fused"], models["textbook"]
    assert all(layer.fused for _, layer in fused.bn_layers())
    assert not any(layer.fused for _, layer in textbook.bn_layers())
    _assert_close(np.array(losses["fused"]), np.array(losses["textbook"]), "losses")
    for k in fused.params:
        _assert_close(fused.params[k], textbook.params[k], k)
        _assert_close(fused.grads[k], textbook.grads[k], f"grad {k}")
    fb, tb = fused.get_buffers(), textbook.get_buffers()
    assert set(fb) == set(tb) == {f"bn{i}.{s}" for i in (1, 2) for s in ("running_mean", "running_var")}
    for k in fb:
        _assert_close(fb[k], tb[k], k)
    for k, v in fused.population_stats(X, 8).items():
        _assert_close(v, textbook.population_stats(X, 8)[k], f"population {k}")
    for mode in ("eval", "batch"):
        _assert_close(fused.forward(X, mode), textbook.forward(X, mode), mode)
    if bn == "before":
        for (Wf, bf, _), (Wt, bt, _) in zip(fused.folded_layers(), textbook.folded_layers()):
            _assert_close(Wf, Wt, "folded W")
            _assert_close(bf, bt, "folded b")
    assert not np.allclose(fused.params["dense1.W"], MLP(6, [7, 5], 3, rng=np.random.default_rng(2),
                                                         dtype=np.float64).params["dense1.W"])


@pytest.mark.parametrize("bn_impl", BN_IMPLS)
def test_running_statistics_follow_the_batches_of_every_bn_layer(bn_impl):
    """After one training step from fresh buffers, each BN layer's running mean is (1 - decay) x the mean of its
    input and its running variance decay + (1 - decay) x the unbiased variance (float64 reference)."""
    rng = np.random.default_rng(17)
    model = MLP(6, [7, 5], 3, rng=rng, activation="tanh", bn="after", bn_decay=0.8, dtype=np.float64,
                bn_impl=bn_impl)
    X = rng.standard_normal((10, 6)) * 3 + 1
    inputs, x = {}, X
    for name, layer in model.layers:  # reference inputs of each BN layer, from a forward that updates nothing
        if isinstance(layer, BatchNorm):
            inputs[name] = x.copy()
        x = layer.forward(x.copy(), "batch")
    model.forward(X, "train")
    for name, layer in model.bn_layers():
        np.testing.assert_allclose(layer.buffers["running_mean"], 0.2 * inputs[name].mean(0), rtol=1e-12)
        np.testing.assert_allclose(layer.buffers["running_var"], 0.8 + 0.2 * inputs[name].var(0, ddof=1), rtol=1e-12)
