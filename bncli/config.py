"""Typed experiment configuration: YAML file + ``key=value`` overrides -> validated ``ExperimentConfig``.

Every field has its default here, next to its type. Unknown keys, wrong types and out-of-range values are refused
with ``file:line: key: what was expected``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import unicodedata
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import numpy as np
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer,
                      model_validator)

from . import yamlio
from .core.model import PLACEMENTS
from .errors import UsageError

Placement = Literal["none", "before", "after", "noisy"]


def _got(v) -> str:
    return yamlio.clip(repr(v))


def _wants_number(annotation) -> bool:
    return annotation in (int, float) or any(_wants_number(a) for a in get_args(annotation))


class Strict(BaseModel):
    # inf and nan are never a meant value (lr, noise, eps, ...): refused in every float field, with the key named.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, v, info):
        # Python counts True as 1, so without this `lr: true` would be read as 1.0 and `seeds: [true]` as [1].
        is_bool = isinstance(v, bool) or (isinstance(v, list) and any(isinstance(x, bool) for x in v))
        if is_bool and _wants_number(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"expected a number, not true/false (got {_got(v)})")
        return v


# Synthetic data is drawn in float64 all at once: (n_train + n_test + centres) x n_features values.
MAX_SYNTHETIC_VALUES = 20_000_000  # 160 MB in float64, e.g. 900,000 samples of 20 features; MNIST has 55 million


class SyntheticConfig(Strict):
    n_train: int = Field(2000, ge=2, le=10_000_000)
    n_test: int = Field(500, ge=1, le=10_000_000)
    n_features: int = Field(20, ge=1, le=100_000)
    n_classes: int = Field(4, ge=2, le=1000)
    clusters_per_class: int = Field(2, ge=1, le=1000)
    noise: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _bounded(self):
        rows = self.n_train + self.n_test + self.n_classes * self.clusters_per_class
        if rows * self.n_features > MAX_SYNTHETIC_VALUES:
            raise ValueError(f"(n_train + n_test + n_classes x clusters_per_class) x n_features = "
                             f"{rows * self.n_features:,} values, more than {MAX_SYNTHETIC_VALUES:,} "
                             f"({MAX_SYNTHETIC_VALUES * 8 // 10**6} MB in float64); use fewer samples or features")
        return self


class DataConfig(Strict):
    name: Literal["mnist-5k", "mnist", "fashion-mnist", "cifar10", "synthetic"] = "mnist-5k"
    path: str | None = None  # folder with the dataset's files; else $BNCLI_DATA, else the user cache
    standardize: bool = False  # with the training split's per-feature mean/std
    val_fraction: float = Field(0.0, ge=0, lt=0.9)  # carved from the training split
    split_seed: int = Field(0, ge=0)  # validation split and synthetic draw: fixed across runs and arms
    limit_train: int | None = Field(None, ge=2)
    limit_test: int | None = Field(None, ge=1)
    synthetic: SyntheticConfig = SyntheticConfig()


# Bounds on the network so a typo cannot allocate terabytes: 20x the widest and 10x the deepest shipped model.
MAX_WIDTH = 10_000
MAX_LAYERS = 200
MAX_HIDDEN_WEIGHTS = 100_000_000  # between hidden layers: 400 MB of float32 weights, before gradients and moments
MAX_CONV_LAYERS = 20
MAX_CHANNELS = 1024
MAX_KERNEL = 15


class ConvLayerConfig(Strict):
    """One convolution block: conv (kernel x kernel, stride, zero padding) -> [BN] -> activation -> [BN] ->
    optional pooling (pool x pool windows, stride pool). Whether the sizes fit the images is checked with the data."""

    channels: int = Field(ge=1, le=MAX_CHANNELS)
    kernel: int = Field(3, ge=1, le=MAX_KERNEL)
    stride: int = Field(1, ge=1, le=MAX_KERNEL)
    padding: int = Field(0, ge=0, le=MAX_KERNEL)
    pool: int = Field(0, ge=0, le=8)  # 0 or 1: no pooling
    pool_type: Literal["max", "avg"] = "max"


class ModelConfig(Strict):
    hidden: list[int] | None = None  # widths of the hidden layers; or depth x width
    depth: int | None = Field(None, ge=0, le=MAX_LAYERS)  # bounded before [width] * depth is built
    width: int | None = Field(None, ge=1, le=MAX_WIDTH)
    activation: Literal["relu", "sigmoid", "tanh", "identity"] = "relu"
    bn: list[Placement] = ["none", "before"]  # one arm per placement
    init: Literal["he", "glorot", "normal"] = "he"
    init_std: float = Field(0.05, gt=0)  # std of init "normal"
    bn_decay: float = Field(0.9, ge=0, lt=1)  # weight kept on the old running value (PyTorch momentum = 1 - decay)
    bn_eps: float = Field(1e-5, gt=0)
    bias_with_bn: bool = False  # keep the (redundant) dense bias in front of BN
    bn_eval: Literal["running", "population"] = "running"  # statistics used in eval mode
    # Convolution blocks before the dense ``hidden`` layers (images only); BN of a conv output normalizes each
    # channel over (N, H, W) ("channel", BatchNorm2d) or each (c, h, w) activation over N ("activation", CLAIMS C13).
    conv: list[ConvLayerConfig] = Field([], max_length=MAX_CONV_LAYERS)
    bn_per: Literal["channel", "activation"] = "channel"
    # Arm "noisy" (CLAIMS C14, Santurkar et al. 2018): BN before the activation, then y = s_j * x + m_j per unit,
    # log s_j uniform on [log noise_scale_low, log noise_scale_high], m_j uniform on [-noise_mean, noise_mean],
    # redrawn every training step (core/noise.py).
    noise_mean: float = Field(1.0, ge=0, le=100)
    noise_scale_low: float = Field(0.5, gt=0, le=100)
    noise_scale_high: float = Field(2.0, gt=0, le=100)

    @field_validator("bn", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        v = [v] if isinstance(v, str) else v
        if isinstance(v, list):
            if not v:
                raise ValueError(f"expected at least one BN placement out of {list(PLACEMENTS)}")
            # Only names can repeat; any other item (a list, a mapping) is refused by the type check next.
            if all(isinstance(p, str) for p in v) and len(set(v)) != len(v):
                raise ValueError(f"placements must not repeat (got {_got(v)})")
        return v

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, v):
        if v is not None and any(w < 1 for w in v):
            raise ValueError(f"hidden widths must be >= 1 (got {_got(v)})")
        if v is not None and (len(v) > MAX_LAYERS or any(w > MAX_WIDTH for w in v)):
            raise ValueError(f"at most {MAX_LAYERS} hidden layers of at most {MAX_WIDTH:,} units (got {_got(v)})")
        return v

    @model_validator(mode="after")
    def _resolve_hidden(self):
        if self.hidden is not None and (self.depth is not None or self.width is not None):
            raise ValueError("give either model.hidden or model.depth and model.width, not both")
        if self.hidden is None:
            self.hidden = [self.width or 100] * (2 if self.depth is None else self.depth)
            self.depth = self.width = None
        if "noisy" in self.bn and self.conv:
            raise ValueError("the noisy arm is implemented for dense layers only; use it without model.conv")
        if self.noise_scale_low > self.noise_scale_high:
            raise ValueError(f"model.noise_scale_low ({self.noise_scale_low:g}) must be <= model.noise_scale_high "
                             f"({self.noise_scale_high:g})")
        weights = sum(a * b for a, b in zip(self.hidden, self.hidden[1:]))
        if weights > MAX_HIDDEN_WEIGHTS:
            raise ValueError(f"{weights:,} weights between hidden layers, more than {MAX_HIDDEN_WEIGHTS:,}; use "
                             "narrower or fewer layers")
        return self


class OptimizerConfig(Strict):
    name: Literal["sgd", "momentum", "rmsprop", "adam"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    rho: float = Field(0.99, ge=0, lt=1)  # rmsprop's average of squared gradients
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)  # L2 on weight matrices only
    schedule: Literal["constant", "step", "cosine"] = "constant"
    step_size: int = Field(1000, ge=1)  # schedule "step": multiply by gamma every step_size steps
    gamma: float = Field(0.1, gt=0, le=1)
    min_lr: float = Field(0.0, ge=0)  # schedule "cosine": final learning rate
    warmup: int = Field(0, ge=0)  # linear warm-up steps
    # Linear scaling rule (Goyal et al. 2017): lr is the rate at this batch size and is multiplied by
    # train.batch_size / lr_reference_batch, so a sweep over batch sizes keeps lr per example fixed.
    lr_reference_batch: int | None = Field(None, ge=1)


MAX_SEEDS = 10_000  # seeds per config: each is a run per arm (and per sweep point)


class TrainConfig(Strict):
    batch_size: int = 60  # >= 2, see _two_per_batch
    epochs: int | None = Field(None, ge=1)  # budget: epochs or steps (default 10 epochs)
    steps: int | None = Field(None, ge=1)
    seeds: list[int] = [0, 1, 2, 3, 4]  # a count n means seeds 0..n-1
    eval_every: int | None = Field(None, ge=1)  # steps between evaluations; default once per epoch
    eval_train: bool = False  # also evaluate the whole training split in eval mode
    target_accuracy: float = Field(0.9, gt=0, le=1)  # for "steps to target"
    target_split: Literal["test", "val", "train"] = "test"
    dtype: Literal["float32", "float64"] = "float32"
    # Extra measurements: "percentiles" records the 15/50/85th percentiles of every unit's input to the last
    # hidden nonlinearity on the first ``percentile_images`` test images at each evaluation (CLAIMS C9);
    # "eval_variants" compares test-time statistics after training (CLAIMS C5); "shifted" the test accuracy on
    # images translated by 0-3 pixels (images only, CLAIMS C13); "ics" and "smoothness" probe every ``probe_every``
    # steps the gradient change caused by the lower layers' update and the loss and gradient along the gradient at
    # step sizes ``probe_lr_multiples`` x lr (core/probes.py, CLAIMS C14, C15).
    measure: list[Literal["percentiles", "eval_variants", "shifted", "ics", "smoothness"]] = []
    probe_every: int = Field(100, ge=1)
    probe_lr_multiples: list[float] = Field([0.25, 0.5, 1.0, 2.0, 4.0], min_length=1, max_length=20)
    percentile_images: int = Field(1000, ge=2)
    # Whose inputs "percentiles" records: the last hidden nonlinearity (null), or an activation layer by name: act1,
    # act2, ... (dense) or convact1, ... (a convolution block's; each channel is one unit, over images and positions).
    percentile_layer: str | None = Field(None, pattern=r"^(conv)?act[1-9][0-9]{0,2}$")

    @field_validator("probe_lr_multiples")
    @classmethod
    def _positive_multiples(cls, v):
        if any(not (0 < m <= 1000) for m in v):
            raise ValueError(f"each multiple of the learning rate must be > 0 and <= 1000 (got {_got(v)})")
        return v

    @field_validator("batch_size")
    @classmethod
    def _two_per_batch(cls, v):
        # BN has no variance in a batch of one, and the training loop skips such batches: with batch_size 1 it
        # would skip every batch and never end, with or without a BN arm.
        if v < 2:
            raise ValueError(f"must be >= 2 (got {v}): BN and the training loop need at least 2 samples per batch")
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _count_or_list(cls, v):
        if isinstance(v, bool):
            raise ValueError("expected a number of seeds or a list of seeds")
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"expected at least 1 seed (got {v})")
            if v > MAX_SEEDS:
                raise ValueError(f"at most {MAX_SEEDS:,} seeds (got {v:,})")
            return list(range(v))
        if isinstance(v, list):
            if not v:
                raise ValueError("expected at least 1 seed")
            if len(v) > MAX_SEEDS:
                raise ValueError(f"at most {MAX_SEEDS:,} seeds (got a list of {len(v):,})")
        return v

    @field_validator("seeds", mode="wrap")
    @classmethod
    def _distinct_seeds(cls, v, handler):
        # Checked on the integers the seeds become, as every int key reads '7' and 7.0 as 7: [1, 1.0] and [1, '01']
        # are seed 1 twice, and '-1' is a negative seed.
        seeds = handler(v)
        if any(not 0 <= s < 2**63 for s in seeds):
            raise ValueError(f"seeds must be >= 0 and < 2**63 (got {_got(v)})")
        seen = set()
        twice = next((s for s in seeds if s in seen or seen.add(s)), None)
        if twice is not None:
            given = [_got(x) for x, s in zip(v, seeds) if s == twice]
            forms = list(dict.fromkeys(given))[:3]
            if len(forms) == 1:
                what = f"seed {twice} is given {len(given):,} times"
            else:  # written differently: say which items are the same seed
                both = "both" if len(forms) == 2 else "all"
                what = f"{', '.join(forms[:-1])} and {forms[-1]} are {both} seed {twice}"
            raise ValueError(f"seeds must not repeat: {what} (got {_got(v)})")
        return seeds

    @model_validator(mode="after")
    def _budget(self):
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give either train.epochs or train.steps, not both (set the other to null)")
        if self.target_split == "train" and not self.eval_train:
            raise ValueError("target_split 'train' needs train.eval_train: true")
        return self


class SweepParam(Strict):
    """One swept key: explicit ``values``; or a grid from ``min`` to ``max`` (``scale`` log with ``per_decade``
    points, or ``num`` points); or, for ``method: random``, a ``distribution`` between ``min`` and ``max``."""

    values: list[Any] | None = None
    min: float | None = None
    max: float | None = None
    scale: Literal["log", "linear"] = "log"
    # Counts beyond sweep.max_runs are refused before any point is made; this bound keeps the count in floats.
    per_decade: int | None = Field(None, ge=1, le=10**9)
    num: int | None = Field(None, ge=1, le=10**9)
    distribution: Literal["log_uniform_values", "uniform", "int_uniform"] | None = None

    @model_validator(mode="after")
    def _one_form(self):
        has_range = self.min is not None or self.max is not None
        if self.values is not None:
            if has_range or self.per_decade or self.num or self.distribution:
                raise ValueError("give either values or a range (min, max, ...), not both")
            if not self.values:
                raise ValueError("values must not be empty")
            if not _all_finite(self.values):
                raise ValueError(f"values must be finite numbers, not inf or nan (got {_got(self.values)})")
            return self
        if self.min is None or self.max is None:
            raise ValueError("expected values: [...] or a range with both min and max")
        if self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is larger than max ({self.max:g})")
        if not math.isfinite(self.max - self.min):  # numpy's uniform and linspace overflow on such a range
            raise ValueError(f"the range from min ({self.min:g}) to max ({self.max:g}) is too wide to compute")
        if self.distribution == "int_uniform" and max(-self.min, self.max) > 2**53:
            raise ValueError("int_uniform needs min and max within +-2**53 (integers exact in a float)")
        log = self.distribution == "log_uniform_values" or (self.distribution is None and self.scale == "log")
        if log and self.min <= 0:
            raise ValueError(f"a log scale needs min > 0 (got {self.min:g})")
        if self.distribution is None and self.per_decade is None and self.num is None:
            raise ValueError("a range needs per_decade (log scale) or num for a grid, or a distribution "
                             "(log_uniform_values, uniform, int_uniform) for method: random")
        if self.per_decade is not None and self.scale != "log":
            raise ValueError("per_decade needs scale: log")
        return self

    def size(self) -> int:
        """Number of grid points, computed without making them (runs.grid makes exactly this many)."""
        if self.values is not None:
            return len(self.values)
        if self.per_decade:
            decades = math.log10(self.max) - math.log10(self.min)
            return math.floor(decades * self.per_decade + 1e-9) + 1
        return self.num or 1


def _all_finite(v) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    return all(_all_finite(x) for x in v) if isinstance(v, list) else True


# Runs a sweep may plan unless its config raises sweep.max_runs. Planning takes about 80 us and 3.6 KB a run: 8 s
# and 360 MB at the default, which is 40x the 2,240 runs of the whole shipped report.
MAX_RUNS = 100_000
MAX_RUNS_LIMIT = 1_000_000  # the most sweep.max_runs may allow (80 s and 3.6 GB of plan)
_KEY = re.compile(r"[A-Za-z_]\w{0,63}(\.[A-Za-z_]\w{0,63}){0,7}", re.ASCII)  # config keys: 1-3 short parts


class SweepConfig(Strict):
    """A hyperparameter study: the grid (or random draws) of ``parameters``, crossed with the arms and seeds."""

    method: Literal["grid", "random"] = "grid"
    parameters: dict[str, SweepParam] = {}
    count: int | None = Field(None, ge=1)  # method random: number of draws
    seed: int = Field(0, ge=0)  # entropy of the random draws (SeedSequence)
    range_key: str | None = None  # the key whose usable range is reported (default: first numeric one)
    # A value of the range key is usable for a seed only where that run learns: it did not diverge and its tail test
    # accuracy (mean of its last evaluations) is >= floor. An arm that learns nowhere has no usable range.
    floor: float = Field(0.5, gt=0, le=1)
    target_points: list[float] = [0.02, 0.05]  # descriptive widths: within these accuracy points of the seed's best
    # A safety cap, not part of the study: left out of the dump when at its default (see _dump), never in a hash.
    max_runs: int = Field(MAX_RUNS, ge=1, le=MAX_RUNS_LIMIT)

    @model_validator(mode="after")
    def _check(self):
        if not self.parameters:
            raise ValueError("a sweep needs at least one entry under sweep.parameters")
        for key in self.parameters:
            if not _KEY.fullmatch(key):
                raise ValueError(f"swept key {_got(key)} is not a dotted config key such as optimizer.lr")
            if key in ("model.bn", "train.seeds", "name", "description") or key.startswith("sweep"):
                raise ValueError(f"{key} cannot be swept (arms and seeds are crossed with the sweep already)")
        if self.method == "random":
            if self.count is None:
                raise ValueError("method random needs count")
        elif any(p.distribution for p in self.parameters.values()):
            raise ValueError("distribution is for method: random; a grid takes values or min/max with "
                             "per_decade or num")
        if self.range_key is not None and self.range_key not in self.parameters:
            raise ValueError(f"range_key {_got(self.range_key)} is not a swept parameter")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # The default cap is left out so that the config.yaml of a sweep stays as it was before the cap existed.
        d = handler(self)
        if self.max_runs == MAX_RUNS:
            d.pop("max_runs", None)
        return d

    def size(self) -> int:
        """Number of points (before arms and seeds), computed without making them: Python ints, so exact even for
        a grid of 10**12 points."""
        if self.method == "random":
            return self.count
        return math.prod(p.size() for p in self.parameters.values())


NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # an experiment's name: a folder name in every file system, no spaces
MAX_NAME = 100
NAME_RULE = f"letters, digits, _ . -, starting with a letter or digit, at most {MAX_NAME} characters"


class ExperimentConfig(Strict):
    name: str = Field("experiment", pattern=f"^{NAME}$", max_length=MAX_NAME)
    description: str = ""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    train: TrainConfig = TrainConfig()
    sweep: SweepConfig | None = None
    full: list[str] = []  # key=value overrides that turn the quick budget into the full one (`bncli report --full`)

    def run_config(self, arm: str, seed: int) -> "ExperimentConfig":
        """The resolved config of one run: a single BN placement and a single seed."""
        # Without BN, bn_per means nothing: one identity for both values, so a study sweeping it trains no BN once.
        model = {"bn": [arm]} | ({"bn_per": "channel"} if arm == "none" else {})
        return self.model_copy(update={"model": self.model.model_copy(update=model),
                                       "train": self.train.model_copy(update={"seeds": [seed]}), "sweep": None,
                                       "full": []})

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """Identity of the computation: everything but name, description, sweep, full and data.path."""
        d = self.to_dict()
        d.pop("name"), d.pop("description"), d.pop("sweep"), d.pop("full")
        d["data"].pop("path")  # where the files are does not change the numbers (their checksums are checked)
        if not d["model"]["conv"]:  # an MLP keeps the identity it had before convolutions existed
            d["model"].pop("conv"), d["model"].pop("bn_per")
        if "noisy" not in d["model"]["bn"]:  # likewise every config before the noisy arm existed
            for k in ("noise_mean", "noise_scale_low", "noise_scale_high"):
                d["model"].pop(k)
        if not {"ics", "smoothness"} & set(d["train"]["measure"]):
            d["train"].pop("probe_every"), d["train"].pop("probe_lr_multiples")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# -- loading ------------------------------------------------------------------------------------------------------
class Source:
    """Where each key came from, to point error messages at a file line or a command-line override."""

    def __init__(self, file: str, lines: dict, overrides: dict, raw: dict | None = None):
        self.file, self.lines, self.overrides = file, lines, overrides
        self.raw = raw or {}  # the data as read and overridden, before validation (sweeps re-validate it)

    def where(self, path) -> str:
        path = tuple(path)
        # An override replaces the whole subtree under its key, so it wins over any file line below it.
        for n in range(len(path), 0, -1):
            if path[:n] in self.overrides:
                return f"command line '{yamlio.clip(self.overrides[path[:n]])}'"
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return f"{self.file}:{self.lines[path[:n]]}"
        # an unknown section the file does not have came from an override below it (optimzer.lr=0.1)
        below = next((item for key, item in self.overrides.items() if key[:len(path)] == path), None)
        return f"command line '{yamlio.clip(below)}'" if below is not None and path else self.file

    def error(self, path, message) -> UsageError:
        key = yamlio.clip(".".join(str(p) for p in path))
        return UsageError(f"{self.where(path)}: {key}: {message}" if key else f"{self.where(path)}: {message}")


LIST_KEYS = {("model", "bn"), ("train", "seeds")}  # crossed with every sweep already: never swept


MAX_KEY_PARTS = 8  # the deepest config key has 3 parts (data.synthetic.n_train)


def override_key(item: str) -> tuple:
    """The key path of a ``key=value`` override, checked: non-empty parts, not deeper than any config key."""
    if "=" not in item:
        raise UsageError(f"override {_got(item)}: expected key=value, e.g. optimizer.lr=0.05")
    key = item.partition("=")[0]
    path = tuple(key.strip().split("."))
    if not all(path):
        raise UsageError(f"override {_got(item)}: empty key part in {_got(key)}")
    if len(path) > MAX_KEY_PARTS:
        raise UsageError(f"override {_got(item)}: a key of {len(path):,} parts; config keys have at most "
                         f"{MAX_KEY_PARTS}")
    return path


def apply_override(data: dict, item: str) -> tuple:
    path = override_key(item)
    value = item.partition("=")[2]
    try:
        parsed = yamlio.parse_scalar(value)
        if path in LIST_KEYS and isinstance(parsed, str) and "," in parsed:
            parsed = yamlio.parse_scalar(f"[{value}]")  # model.bn=none,before is a list of arms
    except yamlio.YamlError as e:
        raise UsageError(f"override {_got(item)}: {e.message}") from None
    set_key(data, path, parsed)
    return path


# A budget given on the command line or by a sweep point replaces the file's budget, whichever form it takes.
_OTHER_BUDGET = {("train", "steps"): "epochs", ("train", "epochs"): "steps"}


def set_key(data: dict, path: tuple, value):
    """Set ``path`` (a tuple of keys) in raw config data, creating mappings on the way. Setting ``train.steps``
    clears ``train.epochs`` and vice versa (only a file that sets both is refused)."""
    node = data
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value
    other = _OTHER_BUDGET.get(tuple(path))
    if other is not None and value is not None:
        node.pop(other, None)


_RANGE = re.compile(r"^\s*(logrange|linrange)\((.*)\)\s*$")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _range_args(item: str, form: str, args: str) -> tuple:
    """The three numbers of ``logrange(...)`` / ``linrange(...)``. Whether they are finite, in order and not too
    many points is the sweep parameter's check, which names this override."""
    try:
        values = yamlio.parse_scalar(f"[{args}]")
    except yamlio.YamlError:
        values = None
    if not (isinstance(values, list) and len(values) == 3 and all(map(_is_number, values))):
        what = "points per decade" if form == "logrange" else "number of points"
        raise UsageError(f"override {_got(item)}: expected {form}(min, max, {what}) with three numbers")
    a, b, n = values
    # float(n) would overflow on a huge int and int(n) on inf: an integral float becomes an int, the rest is left
    # for the validation to refuse.
    return float(a), float(b), int(n) if isinstance(n, float) and n.is_integer() else n


def sweep_override(item: str):
    """``key=v1,v2,...`` (values read as YAML), ``key=logrange(min,max,per_decade)`` or
    ``key=linrange(min,max,num)`` -> (key, sweep parameter dict); None for a plain override."""
    key, _, value = item.partition("=")
    m = _RANGE.match(value)
    if m:
        a, b, n = _range_args(item, m.group(1), m.group(2))
        grid = {"scale": "log", "per_decade": n} if m.group(1) == "logrange" else {"scale": "linear", "num": n}
        return key.strip(), {"min": a, "max": b, **grid}
    try:
        values = yamlio.parse_scalar(f"[{value}]")
    except yamlio.YamlError:
        return None
    if isinstance(values, list) and len(values) > 1:
        return key.strip(), {"values": values}
    return None


MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: the shipped experiments are 1-2 KB; a bigger config is a mistake


def read_config_text(path: Path) -> str:
    """The text of a config file, read bounded: a device (/dev/zero), a FIFO or a huge file is refused up front."""
    shown = yamlio.clip(str(path), 200)  # a 5,000-character name is not echoed whole
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to would otherwise wait forever (harmless on regular files).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise UsageError(f"{shown}: config file not found") from None
    except OSError as e:  # a symlink loop, a path through a file, a name too long, no permission, ...
        raise UsageError(f"{shown}: cannot read config file ({e.strerror or e})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
        raise UsageError(f"{shown}: cannot read config file: it is {kind}")
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise UsageError(f"{shown}: config file larger than {MAX_CONFIG_BYTES // 2**20} MiB; a config is a short "
                         "YAML file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{shown}: cannot read config file: not UTF-8 text (byte {e.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # the newlines Path.read_text gave


def load_config(path: str | Path, overrides: list[str] = (), sweep_overrides=False) -> tuple[ExperimentConfig, Source]:
    """Read, override and validate. With ``sweep_overrides``, ``key=a,b,c`` and ``key=logrange(...)`` add swept
    parameters (as in Hydra's multirun) instead of setting a value."""
    path = Path(path)
    try:
        data, lines = yamlio.load_with_lines(read_config_text(path))
    except yamlio.YamlError as e:
        raise UsageError(f"{path}:{e.line}: {e.message}" if e.line else f"{path}: {e.message}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of keys (name, data, model, optimizer, train) at the top level")
    named = "name" in data
    data.setdefault("name", path.stem)
    src = Source(str(path), lines, {}, data)
    for item in overrides:
        swept = sweep_override(item) if sweep_overrides and override_key(item) not in LIST_KEYS else None
        if swept:
            _add_swept(data, *swept)
            src.overrides[("sweep", "parameters", swept[0])] = item
        else:
            src.overrides[apply_override(data, item)] = item
    if not named and ("name",) not in src.overrides:
        _check_stem(path)
    both = [src.overrides[k] for k in _OTHER_BUDGET
            if k in src.overrides and src.overrides[k].partition("=")[2].strip() not in ("null", "~", "")]
    if len(both) == 2:
        raise UsageError(f"overrides {_got(both[0])} and {_got(both[1])}: give either train.epochs or train.steps, "
                         "not both")
    return validate(data, src), src


def _check_stem(path: Path):
    """A config without ``name:`` is named after its file; a file name that is not a valid name is said to be the
    cause (the file has no ``name`` key a message about it could point at)."""
    stem = path.stem
    if re.fullmatch(NAME, stem) and len(stem) <= MAX_NAME:
        return
    plain = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()  # été -> ete
    fixed = re.sub(r"[^A-Za-z0-9_.-]+", "_", plain).lstrip("_.-")[:MAX_NAME].rstrip("_") or "my_experiment"
    raise UsageError(f"{yamlio.clip(str(path), 200)}: the experiment name defaults to the file name "
                     f"{_got(stem)}, which is not a valid name ({NAME_RULE}); add `name: {fixed}` to the file or "
                     "rename it")


def _add_swept(data: dict, key: str, spec: dict):
    if not isinstance(data.get("sweep"), dict):
        data["sweep"] = {}
    sweep = data["sweep"]
    if not isinstance(sweep.get("parameters"), dict):
        sweep["parameters"] = {}
    sweep["parameters"][key] = spec


MAX_MESSAGES = 10  # validation errors listed; a list of 100,000 bad values is not listed whole


def validate(data: dict, src: Source) -> ExperimentConfig:
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as e:
        messages = list(dict.fromkeys(_describe(err, src) for err in e.errors(include_url=False)))
        more = [f"... and {len(messages) - MAX_MESSAGES:,} more"] if len(messages) > MAX_MESSAGES else []
        raise UsageError("\n".join(messages[:MAX_MESSAGES] + more)) from None
    # Checks across sections, here rather than in a validator so the message can point at the key's line.
    if cfg.train.target_split == "val" and cfg.data.val_fraction == 0:
        raise src.error(("train", "target_split"), "'val' needs data.val_fraction > 0")
    _check_floors(cfg, src)
    if cfg.sweep is not None:
        _check_runs(cfg, src)
    return cfg


# BN's eps is a floor under each unit's batch variance. The variances it guards are of order 1 (inputs standardized
# or in [0, 1], He or Glorot init; PyTorch's eps is 1e-5, Keras's 1e-3): at 1000 it already outweighs them and
# turns BN into a fixed rescaling, so nothing larger measures anything more, while toward the dtype's largest number
# var + eps overflows (1e300 is inf in float32).
BN_EPS_MAX = 1e3


def _kept(v: float, dtype: str) -> float:
    with np.errstate(under="ignore", over="ignore"):
        return float(np.asarray(v, dtype))


def _too_small(v: float, dtype: str, zero_means: str) -> str:
    """What a positive value below the dtype's smallest normal number becomes there."""
    kept = _kept(v, dtype)
    if kept == 0:
        return f"0 in {dtype} (train.dtype): {zero_means}"
    return f"subnormal in {dtype} (train.dtype): kept as {kept:.6g}, with a few bits of precision"


def _check_floors(cfg: ExperimentConfig, src: Source):
    """The eps that the run adds in its dtype (BN's to the batch variance; rmsprop's and adam's to the root of the
    squared-gradient average) must be a positive normal number there. Below the dtype's smallest normal number it
    becomes 0 or keeps a few bits: a unit with zero variance, or a weight whose gradient stays 0 (a pixel that is 0
    in every image), is then divided 0 by 0, and the run is reported diverged though the config asked for a floor."""
    dtype = cfg.train.dtype
    tiny = float(np.finfo(dtype).tiny)
    normal = f"{dtype}'s smallest normal number"
    wider = " (or train.dtype: float64)" if dtype != "float64" else ""
    m, o = cfg.model, cfg.optimizer
    if any(arm != "none" for arm in m.bn):
        e = m.bn_eps
        if _kept(e, dtype) < tiny:
            became = _too_small(e, dtype, "a unit whose batch variance is 0 would be normalized by 0/0")
            raise src.error(("model", "bn_eps"), f"{e:g} is {became}; expected a value from {tiny:.3g} ({normal}) "
                            f"to {BN_EPS_MAX:g}{wider if e >= np.finfo(np.float64).tiny else ''}")
        if e > BN_EPS_MAX:
            raise src.error(("model", "bn_eps"), f"{e:g} is more than {BN_EPS_MAX:g}: eps is a floor under each "
                            f"unit's batch variance, which is of order 1, so a larger one only turns BN off (and "
                            f"overflows var + eps toward {float(np.finfo(dtype).max):.3g} in {dtype}); expected a "
                            f"value from {tiny:.3g} ({normal}) to {BN_EPS_MAX:g}")
    if o.name in ("rmsprop", "adam"):
        # adam's bias correction scales eps by sqrt(1 - beta2 ** t): smallest at the first step
        scale = math.sqrt(1.0 - o.beta2) if o.name == "adam" else 1.0
        added = o.eps * scale
        if _kept(added, dtype) < tiny:
            became = _too_small(added, dtype, "a weight whose gradient stays 0 would be updated by 0/0")
            what, least = (f"{o.eps:g}", f"{tiny:.3g} ({normal})") if scale == 1 else (
                f"adam adds eps x sqrt(1 - beta2) = {added:.3g} at its first step, which",
                f"{tiny / scale:.3g} ({normal}, {tiny:.3g}, / sqrt(1 - beta2))")
            raise src.error(("optimizer", "eps"), f"{what} is {became}; expected at least {least}{wider}")


def _check_runs(cfg: ExperimentConfig, src: Source):
    """Refuse a sweep of more than sweep.max_runs runs, counted before a single point is made (a 1000 x 1000 grid
    or count: 1e9 would otherwise hang even a dry run). The message points at the largest factor."""
    sweep = cfg.sweep
    points, arms, seeds = sweep.size(), len(cfg.model.bn), len(cfg.train.seeds)
    runs = points * arms * seeds
    if runs <= sweep.max_runs:
        return
    if sweep.method == "random":
        where = ("sweep", "count")
    else:
        where = ("sweep", "parameters", max(sweep.parameters, key=lambda k: sweep.parameters[k].size()))
    raise src.error(where, f"the sweep is {points:,} points x {arms} arms x {seeds:,} seeds = {runs:,} runs, more "
                           f"than sweep.max_runs ({sweep.max_runs:,}); use fewer points, or raise sweep.max_runs "
                           f"(at most {MAX_RUNS_LIMIT:,}) in the sweep section or with sweep.max_runs=N")


def _describe(err: dict, src: Source) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        fields = _fields_at(loc[:-1])
        close = suggest_key(".".join(map(str, loc)))
        mean = f"did you mean {close}? " if close else ""
        return src.error(loc, f"unknown key; {mean}expected one of: {', '.join(fields)}").args[0]
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "missing":
        msg = "required key is missing"
    elif loc == ("name",) and kind in ("string_pattern_mismatch", "string_too_long"):
        msg = f"not a valid name: {NAME_RULE} (got {_got(err.get('input'))})"
    elif "input" in err and kind not in ("value_error", "assertion_error") and not isinstance(err["input"], dict):
        msg += f" (got {_got(err['input'])})"
    return src.error(loc, msg).args[0]


def dotted_keys(model=None, prefix: str = "") -> list[str]:
    """Every key of the configuration, dotted (``optimizer.lr``), sections included; lists and mappings of sections
    (model.conv, sweep.parameters.<key>) are not walked."""
    keys = []
    for name, field in (model or ExperimentConfig).model_fields.items():
        key = prefix + name
        keys.append(key)
        ann = field.annotation
        if get_origin(ann) in (list, dict):  # model.conv, sweep.parameters: no fixed keys below
            continue
        section = next((a for a in (ann, *get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if section is not None:
            keys += dotted_keys(section, key + ".")
    return keys


def suggest_key(key: str) -> str | None:
    """The config key ``key`` was probably meant to be: the one dotted key whose last part it is (``lr`` ->
    ``optimizer.lr``), else the nearest spelling (``optimizer.lrr``, ``optimzer.lr``); None when nothing is close.
    An unknown key is refused whatever this says: the suggestion is only text in the message."""
    import difflib

    keys = [k for k in dotted_keys() if not key.startswith(k + ".")]  # a section holding the key is no answer
    if key in keys:
        return None
    parent, _, last = key.rpartition(".")
    siblings = [k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == parent]
    close = difflib.get_close_matches(last, siblings, n=1, cutoff=0.7)
    if close:
        return f"{parent}.{close[0]}" if parent else close[0]
    same = [k for k in keys if k.rpartition(".")[2] == last]
    if len(same) == 1:
        return same[0]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.8)
    return close[0] if close else None


def _fields_at(loc) -> list[str]:
    """The keys of the section at ``loc``, following optional sections (sweep) and mappings of sections
    (sweep.parameters.<key>)."""
    model, parts = ExperimentConfig, list(loc)
    while parts:
        field = model.model_fields.get(parts.pop(0))
        ann = getattr(field, "annotation", None)
        if get_origin(ann) is dict and parts:
            ann = get_args(ann)[1]
            parts.pop(0)  # the mapping's own key, e.g. the swept key under sweep.parameters
        section = next((a for a in (ann, *get_args(ann))
                        if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if section is None:
            break
        model = section
    return list(model.model_fields)


def to_yaml(cfg: ExperimentConfig) -> str:
    return yamlio.dump(cfg.to_dict())


def resolved_budget(train: TrainConfig, n_train: int) -> tuple[int, int]:
    """(total steps, steps per epoch) with the last batch dropped only when it would hold a single sample."""
    b = train.batch_size
    per_epoch = n_train // b + (1 if n_train % b > 1 else 0)
    if train.steps is not None:
        return train.steps, per_epoch
    return (train.epochs or 10) * per_epoch, per_epoch
