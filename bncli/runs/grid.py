"""The points of a sweep: a grid (the product of every parameter's values) or a seeded random search.

Random-search draws come from ``SeedSequence(sweep.seed)``, so the points depend on the config alone. The number of
points is known before any is made (``SweepConfig.size``): a sweep above ``sweep.max_runs`` is refused first."""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..config import SweepParam
from ..errors import UsageError


def _nice(v: float) -> float:
    return float(f"{v:.6g}")


def grid_values(p: SweepParam) -> list:
    if p.values is not None:
        return list(p.values)
    if p.scale == "log":
        lo, hi = math.log10(p.min), math.log10(p.max)
        if p.per_decade:
            return [_nice(10 ** (lo + k / p.per_decade)) for k in range(p.size())]
        return [_nice(v) for v in np.logspace(lo, hi, p.num)]
    vals = np.linspace(p.min, p.max, p.num)
    if float(p.min).is_integer() and float(p.max).is_integer() and all(float(v).is_integer() for v in vals):
        return [int(v) for v in vals]
    return [_nice(v) for v in vals]


def random_value(p: SweepParam, rng: np.random.Generator):
    if p.values is not None:
        return p.values[int(rng.integers(len(p.values)))]
    if p.distribution == "int_uniform":
        return int(rng.integers(int(p.min), int(p.max) + 1))
    if p.distribution == "uniform" or (p.distribution is None and p.scale == "linear"):
        return _nice(rng.uniform(p.min, p.max))
    return _nice(math.exp(rng.uniform(math.log(p.min), math.log(p.max))))


def points(spec) -> list[dict]:
    """Every point of a ``SweepConfig``: {dotted key: value}."""
    # load_config refuses this with the file line (and counts arms and seeds too); this guards any other caller.
    if spec.size() > spec.max_runs:
        raise UsageError(f"sweep: {spec.size():,} points, more than sweep.max_runs ({spec.max_runs:,})")
    keys = list(spec.parameters)
    if spec.method == "random":
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed))
        return [{k: random_value(spec.parameters[k], rng) for k in keys} for _ in range(spec.count)]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid_values(spec.parameters[k]) for k in keys))]
