"""Typed experiment configuration: YAML file + ``key=value`` overrides -> validated ``ExperimentConfig``.

Every field has its default here, next to its type. Unknown keys, wrong types and out-of-range values are refused
with ``file:line: key: what was expected``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import yamlio
from .core.model import PLACEMENTS
from .errors import UsageError

Placement = Literal["none", "before", "after"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyntheticConfig(Strict):
    n_train: int = Field(2000, ge=2)
    n_test: int = Field(500, ge=1)
    n_features: int = Field(20, ge=1)
    n_classes: int = Field(4, ge=2)
    clusters_per_class: int = Field(2, ge=1)
    noise: float = Field(1.0, gt=0)


class DataConfig(Strict):
    name: Literal["mnist-5k", "mnist", "fashion-mnist", "cifar10", "synthetic"] = "mnist-5k"
    path: str | None = None  # folder with the dataset's files; else $BNCLI_DATA, else the user cache
    standardize: bool = False  # with the training split's per-feature mean/std
    val_fraction: float = Field(0.0, ge=0, lt=0.9)  # carved from the training split
    split_seed: int = Field(0, ge=0)  # validation split and synthetic draw: fixed across runs and arms
    limit_train: int | None = Field(None, ge=2)
    limit_test: int | None = Field(None, ge=1)
    synthetic: SyntheticConfig = SyntheticConfig()


class ModelConfig(Strict):
    hidden: list[int] | None = None  # widths of the hidden layers; or depth x width
    depth: int | None = Field(None, ge=0)
    width: int | None = Field(None, ge=1)
    activation: Literal["relu", "sigmoid", "tanh", "identity"] = "relu"
    bn: list[Placement] = ["none", "before"]  # one arm per placement
    init: Literal["he", "glorot", "normal"] = "he"
    init_std: float = Field(0.05, gt=0)  # std of init "normal"
    bn_decay: float = Field(0.9, ge=0, lt=1)  # weight kept on the old running value (PyTorch momentum = 1 - decay)
    bn_eps: float = Field(1e-5, gt=0)
    bias_with_bn: bool = False  # keep the (redundant) dense bias in front of BN
    bn_eval: Literal["running", "population"] = "running"  # statistics used in eval mode

    @field_validator("bn", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        v = [v] if isinstance(v, str) else v
        if isinstance(v, list):
            if not v:
                raise ValueError(f"expected at least one BN placement out of {list(PLACEMENTS)}")
            if len(set(v)) != len(v):
                raise ValueError(f"placements must not repeat (got {v})")
        return v

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, v):
        if v is not None and any(w < 1 for w in v):
            raise ValueError(f"hidden widths must be >= 1 (got {v})")
        return v

    @model_validator(mode="after")
    def _resolve_hidden(self):
        if self.hidden is not None and (self.depth is not None or self.width is not None):
            raise ValueError("give either model.hidden or model.depth and model.width, not both")
        if self.hidden is None:
            self.hidden = [self.width or 100] * (2 if self.depth is None else self.depth)
            self.depth = self.width = None
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


class TrainConfig(Strict):
    batch_size: int = Field(60, ge=1)
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
    # "eval_variants" compares test-time statistics after training (CLAIMS C5).
    measure: list[Literal["percentiles", "eval_variants"]] = []
    percentile_images: int = Field(1000, ge=2)

    @field_validator("seeds", mode="before")
    @classmethod
    def _count_or_list(cls, v):
        if isinstance(v, bool):
            raise ValueError("expected a number of seeds or a list of seeds")
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"expected at least 1 seed (got {v})")
            return list(range(v))
        if isinstance(v, list):
            if not v:
                raise ValueError("expected at least 1 seed")
            if len(set(map(str, v))) != len(v):
                raise ValueError(f"seeds must not repeat (got {v})")
            if any(isinstance(s, int) and s < 0 for s in v):
                raise ValueError(f"seeds must be >= 0 (got {v})")
        return v

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
    per_decade: int | None = Field(None, ge=1)
    num: int | None = Field(None, ge=1)
    distribution: Literal["log_uniform_values", "uniform", "int_uniform"] | None = None

    @model_validator(mode="after")
    def _one_form(self):
        has_range = self.min is not None or self.max is not None
        if self.values is not None:
            if has_range or self.per_decade or self.num or self.distribution:
                raise ValueError("give either values or a range (min, max, ...), not both")
            if not self.values:
                raise ValueError("values must not be empty")
            return self
        if self.min is None or self.max is None:
            raise ValueError("expected values: [...] or a range with both min and max")
        if self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is larger than max ({self.max:g})")
        log = self.distribution == "log_uniform_values" or (self.distribution is None and self.scale == "log")
        if log and self.min <= 0:
            raise ValueError(f"a log scale needs min > 0 (got {self.min:g})")
        if self.distribution is None and self.per_decade is None and self.num is None:
            raise ValueError("a range needs per_decade (log scale) or num for a grid, or a distribution "
                             "(log_uniform_values, uniform, int_uniform) for method: random")
        if self.per_decade is not None and self.scale != "log":
            raise ValueError("per_decade needs scale: log")
        return self


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

    @model_validator(mode="after")
    def _check(self):
        if not self.parameters:
            raise ValueError("a sweep needs at least one entry under sweep.parameters")
        for key in self.parameters:
            if key in ("model.bn", "train.seeds", "name", "description") or key.startswith("sweep"):
                raise ValueError(f"{key} cannot be swept (arms and seeds are crossed with the sweep already)")
        if self.method == "random":
            if self.count is None:
                raise ValueError("method random needs count")
        elif any(p.distribution for p in self.parameters.values()):
            raise ValueError("distribution is for method: random; a grid takes values or min/max with "
                             "per_decade or num")
        if self.range_key is not None and self.range_key not in self.parameters:
            raise ValueError(f"range_key {self.range_key!r} is not a swept parameter")
        return self


class ExperimentConfig(Strict):
    name: str = Field("experiment", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: str = ""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    train: TrainConfig = TrainConfig()
    sweep: SweepConfig | None = None
    full: list[str] = []  # key=value overrides that turn the quick budget into the full one (`bncli report --full`)

    def run_config(self, arm: str, seed: int) -> "ExperimentConfig":
        """The resolved config of one run: a single BN placement and a single seed."""
        return self.model_copy(update={"model": self.model.model_copy(update={"bn": [arm]}),
                                       "train": self.train.model_copy(update={"seeds": [seed]}), "sweep": None,
                                       "full": []})

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """Identity of the computation: everything but name, description, sweep, full and data.path."""
        d = self.to_dict()
        d.pop("name"), d.pop("description"), d.pop("sweep"), d.pop("full")
        d["data"].pop("path")  # where the files are does not change the numbers (their checksums are checked)
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
                return f"command line '{self.overrides[path[:n]]}'"
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return f"{self.file}:{self.lines[path[:n]]}"
        return self.file

    def error(self, path, message) -> UsageError:
        key = ".".join(str(p) for p in path)
        return UsageError(f"{self.where(path)}: {key}: {message}" if key else f"{self.where(path)}: {message}")


LIST_KEYS = {("model", "bn"), ("train", "seeds")}  # crossed with every sweep already: never swept


def apply_override(data: dict, item: str) -> tuple:
    if "=" not in item:
        raise UsageError(f"override {item!r}: expected key=value, e.g. optimizer.lr=0.05")
    key, _, value = item.partition("=")
    path = tuple(key.strip().split("."))
    if not all(path):
        raise UsageError(f"override {item!r}: empty key part in {key!r}")
    try:
        parsed = yamlio.parse_scalar(value)
        if path in LIST_KEYS and isinstance(parsed, str) and "," in parsed:
            parsed = yamlio.parse_scalar(f"[{value}]")  # model.bn=none,before is a list of arms
    except yamlio.YamlError as e:
        raise UsageError(f"override {item!r}: {e.message}") from None
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


def sweep_override(item: str):
    """``key=v1,v2,...`` (values read as YAML), ``key=logrange(min,max,per_decade)`` or
    ``key=linrange(min,max,num)`` -> (key, sweep parameter dict); None for a plain override."""
    key, _, value = item.partition("=")
    m = _RANGE.match(value)
    if m:
        try:
            a, b, n = yamlio.parse_scalar(f"[{m.group(2)}]")
            spec = {"min": float(a), "max": float(b)}
            spec.update({"scale": "log", "per_decade": int(n)} if m.group(1) == "logrange"
                        else {"scale": "linear", "num": int(n)})
        except (ValueError, TypeError, yamlio.YamlError):
            raise UsageError(f"override {item!r}: expected {m.group(1)}(min, max, "
                             f"{'points per decade' if m.group(1) == 'logrange' else 'number of points'})") from None
        return key.strip(), spec
    try:
        values = yamlio.parse_scalar(f"[{value}]")
    except yamlio.YamlError:
        return None
    if isinstance(values, list) and len(values) > 1:
        return key.strip(), {"values": values}
    return None


def load_config(path: str | Path, overrides: list[str] = (), sweep_overrides=False) -> tuple[ExperimentConfig, Source]:
    """Read, override and validate. With ``sweep_overrides``, ``key=a,b,c`` and ``key=logrange(...)`` add swept
    parameters (as in Hydra's multirun) instead of setting a value."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: config file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read config file ({e.__class__.__name__}: {e})") from None
    try:
        data, lines = yamlio.load_with_lines(text)
    except yamlio.YamlError as e:
        raise UsageError(f"{path}:{e.line}: {e.message}" if e.line else f"{path}: {e.message}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of keys (name, data, model, optimizer, train) at the top level")
    data.setdefault("name", path.stem)
    src = Source(str(path), lines, {}, data)
    for item in overrides:
        key = tuple(item.partition("=")[0].strip().split("."))
        swept = sweep_override(item) if sweep_overrides and "=" in item and key not in LIST_KEYS else None
        if swept:
            key, spec = swept
            if not isinstance(data.get("sweep"), dict):
                data["sweep"] = {}
            sweep = data["sweep"]
            if not isinstance(sweep.get("parameters"), dict):
                sweep["parameters"] = {}
            sweep["parameters"][key] = spec
            src.overrides[("sweep", "parameters", key)] = item
        else:
            src.overrides[apply_override(data, item)] = item
    both = [src.overrides[k] for k in _OTHER_BUDGET
            if k in src.overrides and src.overrides[k].partition("=")[2].strip() not in ("null", "~", "")]
    if len(both) == 2:
        raise UsageError(f"overrides {both[0]!r} and {both[1]!r}: give either train.epochs or train.steps, not both")
    return validate(data, src), src


def validate(data: dict, src: Source) -> ExperimentConfig:
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as e:
        messages = [_describe(err, src) for err in e.errors(include_url=False)]
        raise UsageError("\n".join(dict.fromkeys(messages))) from None
    # Checks across sections, here rather than in a validator so the message can point at the key's line.
    if cfg.train.batch_size < 2 and any(p != "none" for p in cfg.model.bn):
        raise src.error(("train", "batch_size"), "must be >= 2 with a BN arm: a batch of one sample has no variance")
    if cfg.train.target_split == "val" and cfg.data.val_fraction == 0:
        raise src.error(("train", "target_split"), "'val' needs data.val_fraction > 0")
    return cfg


def _describe(err: dict, src: Source) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        fields = _fields_at(loc[:-1])
        return src.error(loc, f"unknown key; expected one of: {', '.join(fields)}").args[0]
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "missing":
        msg = "required key is missing"
    elif "input" in err and kind not in ("value_error", "assertion_error") and not isinstance(err["input"], dict):
        msg += f" (got {err['input']!r})"
    return src.error(loc, msg).args[0]


def _fields_at(loc) -> list[str]:
    model = ExperimentConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            break
        model = ann
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
