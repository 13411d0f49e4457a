"""NoisyShift: the noise of "noisy BN" (Santurkar, Tsipras, Ilyas & Madry 2018, "How Does Batch Normalization Help
Optimization?", §2.1), which MLP(bn="noisy") puts between each BN layer and its activation.

Operation ``noisy_shift`` on a (N, D) array x, in "train" mode:

    y[n, j] = s_j * x[n, j] + m_j                for every unit j = 1..D,

    s_j = exp(u_j), u_j ~ Uniform[log(scale_low), log(scale_high)]   (s_j log-uniform on [scale_low, scale_high])
    m_j ~ Uniform[-mean, mean]

with (s, m) drawn by an explicit ``draw(rng)`` call, once per training step (not per forward call): first the D
scales, then the D shifts, from the ``rng`` given. Before the first draw s = 1 and m = 0. Defaults: mean = 1,
scale_low = 0.5, scale_high = 2. Backward: dx = dy * s.

In any other mode ("eval", "batch") the layer is the identity, forward and backward, unless ``always`` is True: then
the current draw is applied in every mode (to measure the activation's inputs as the training step sees them).

The noise deliberately makes the distribution of the activation's inputs unstable (non-zero mean, non-unit scale,
changing every step) while BN still normalizes underneath: if BN helped by stabilizing those distributions (less
"internal covariate shift"), the noisy arm would lose that help.
"""

from __future__ import annotations

import numpy as np


class NoisyShift:
    """``noisy_shift`` over the feature axis of a (N, D) array (module docstring). No parameters and no buffers.
    ``inplace=True`` overwrites the input in forward and the upstream gradient in backward (for a model whose
    arrays there are fresh, as the Activation's option)."""

    def __init__(self, dim, *, mean=1.0, scale_low=0.5, scale_high=2.0, dtype=np.float32, inplace=False):
        if not mean >= 0:
            raise ValueError(f"noise mean must be >= 0, got {mean}")
        if not 0 < scale_low <= scale_high:
            raise ValueError(f"noise scales must satisfy 0 < scale_low <= scale_high, got ({scale_low}, {scale_high})")
        self.mean, self.scale_low, self.scale_high = float(mean), float(scale_low), float(scale_high)
        self.inplace, self.always = inplace, False
        self.params, self.grads, self.buffers = {}, {}, {}
        self.scale, self.shift = np.ones(dim, dtype), np.zeros(dim, dtype)
        self.cache = None

    def draw(self, rng: np.random.Generator):
        """New (s, m) for the next training step: the scales, then the shifts."""
        d, dtype = self.scale.size, self.scale.dtype
        self.scale = np.exp(rng.uniform(np.log(self.scale_low), np.log(self.scale_high), d)).astype(dtype)
        self.shift = rng.uniform(-self.mean, self.mean, d).astype(dtype)

    def forward(self, x, mode="train"):
        if mode != "train" and not self.always:
            self.cache = None
            return x
        self.cache = self.scale  # the draw this forward used, whatever draw() does before backward
        y = np.multiply(x, self.scale, out=x if self.inplace else None)
        y += self.shift
        return y

    def backward(self, dy):
        if self.cache is None:
            return dy
        return np.multiply(dy, self.cache, out=dy if self.inplace else None)
