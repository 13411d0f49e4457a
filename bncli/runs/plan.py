"""Planning: a config becomes the list of its runs — arms x seeds x sweep points — each keyed by the hash of its
resolved single-run config. `bncli train` is a plan with one empty point; `bncli sweep` and the report's studies
add the sweep's points. Whether a run is already done (by this code) is read from its directory."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from ..config import ExperimentConfig, Source, set_key, validate
from ..errors import UsageError
from ..yamlio import clip
from .grid import points
from .store import is_current



@dataclass
class RunSpec:
    point: dict  # swept key -> value ({} outside sweeps)
    arm: str
    seed: int
    config: ExperimentConfig  # the resolved single-run config
    hash: str
    run_dir: Path
    done: bool = False  # a current run directory exists (see store.is_current)

    def label(self, keys=None) -> str:
        """``lr=0.1 momentum before s3``: the swept values (short key names), the arm and the seed."""
        keys = self.point if keys is None else keys
        vals = " ".join(f"{k.rsplit('.', 1)[-1]}={_short(self.point[k])}" for k in keys)
        return f"{vals} {self.arm} s{self.seed}".strip()


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def sweep_points(cfg: ExperimentConfig, src: Source) -> list[dict]:
    if cfg.sweep is None:
        raise src.error(("sweep",), "this config has no sweep section; add one, or sweep from the command line "
                                    "with key=v1,v2,... or key=logrange(1e-4,10,3)")
    return points(cfg.sweep)


def _point_config(cfg: ExperimentConfig, src: Source, point: dict) -> ExperimentConfig:
    if not point:
        return cfg
    data = copy.deepcopy(src.raw)
    data.pop("sweep", None)
    for key, value in point.items():
        set_key(data, tuple(key.split(".")), value)
    try:
        return validate(data, src)
    except UsageError as e:
        raise UsageError(f"sweep point {clip(repr(point), 200)}:\n{e}") from None  # a value may be 100 KB long


def plan(cfg: ExperimentConfig, src: Source, runs_dir, grid: list[dict] | None = None) -> list[RunSpec]:
    """Every run of ``cfg`` at every point of ``grid`` (default: one empty point), validated, in a stable order
    (point, arm, seed); a run two points share is planned once. ``runs_dir`` may be shared by several plans: runs are
    keyed by their config hash alone."""
    runs_dir = Path(runs_dir)
    specs, seen = [], set()
    for point in grid or [{}]:
        point_cfg = _point_config(cfg, src, point)
        for arm in point_cfg.model.bn:
            for seed in point_cfg.train.seeds:
                rc = point_cfg.run_config(arm, seed)
                h = rc.hash()
                if h in seen:
                    continue
                seen.add(h)
                specs.append(RunSpec(point, arm, seed, rc, h, runs_dir / h, is_current(runs_dir / h)))
    return specs
