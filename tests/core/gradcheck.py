"""Shared numerical-gradient helpers for the core tests.

* ``numerical_grad`` uses central differences, (f(x + h e_i) - f(x - h e_i)) / (2 h), perturbing the array *in place*
  (so it works on a model's own parameter arrays) and restoring every entry afterwards. Use float64 arrays.
* ``rel_error`` is ONE number per array, normalized by the largest magnitude in the array (not per element):

      rel_error(a, n) = max_i |a_i - n_i| / max( max_i (|a_i| + |n_i|), 1e-12 )

  A per-element ratio would blow up on entries whose true gradient is ~0 (where both values are rounding noise);
  normalizing by the array's scale measures the error relative to the size of the gradient as a whole.
"""

from __future__ import annotations

import numpy as np

H = 1e-6


def numerical_grad(f, x, h=H):
    """Central-difference gradient of the scalar function ``f()`` w.r.t. the array ``x`` (modified in place, restored)."""
    assert x.dtype == np.float64, "gradient checks need float64"
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    assert np.shares_memory(flat, x), "x must be contiguous so the perturbation reaches the caller's array"
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = float(f())
        flat[i] = old - h
        fm = float(f())
        flat[i] = old
        gflat[i] = (fp - fm) / (2.0 * h)
    return grad


def rel_error(analytic, numeric):
    """max|a - n| / max(max(|a| + |n|), 1e-12), see the module docstring."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    assert a.shape == n.shape, (a.shape, n.shape)
    return float(np.max(np.abs(a - n)) / max(float(np.max(np.abs(a) + np.abs(n))), 1e-12))
