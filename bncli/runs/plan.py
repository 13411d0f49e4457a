"""Planning: a config becomes the list of its runs — arms x seeds x sweep points — each keyed by the hash of its
resolved single-run config and the fingerprint of its data (verify.run_key). `bncli train` is a plan with one empty
point; `bncli sweep` and the report's studies add the sweep's points. A run is done when its folder verifies
(runs/verify.py); a folder that exists but does not verify is trained again, and the spec says why (``stale``)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from ..config import ExperimentConfig, Source, set_key, validate
from ..errors import UsageError
from ..yamlio import clip
from .grid import points
from .inputs import data_fingerprint
from .store import check_run
from .verify import Stale, run_key


@dataclass
class RunSpec:
    point: dict  # swept key -> value ({} outside sweeps)
    arm: str
    seed: int
    config: ExperimentConfig  # the resolved single-run config
    hash: str
    run_dir: Path
    done: bool = False  # a run folder that verifies exists (see runs/verify.py)
    data_fingerprint: str = ""
    stale: Stale | None = None  # why an existing folder is not reused (None: reused, or nothing there yet)

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
        fp = data_fingerprint(point_cfg)  # once per process and data config
        for arm in point_cfg.model.bn:
            for seed in point_cfg.train.seeds:
                rc = point_cfg.run_config(arm, seed)
                h = run_key(rc.hash(), fp)
                if h in seen:
                    continue
                seen.add(h)
                done, why = check_run(runs_dir / h, h)
                specs.append(RunSpec(point, arm, seed, rc, h, runs_dir / h, done, fp, why))
    return specs


def stale_lines(specs, keys=None, most: int = 10) -> list[str]:
    """One line per run whose folder did not verify and is trained again ("by other code" runs are only counted:
    after an upgrade every run is), at most ``most`` of them and then how many more."""
    damaged = [s for s in specs if s.stale is not None and s.stale.kind != "code"]
    lines = [f"training again {s.label(keys)} ({s.run_dir}): {s.stale}" for s in damaged[:most]]
    if len(damaged) > most:
        lines.append(f"... and {len(damaged) - most} more run folders that did not verify")
    old = sum(s.stale is not None and s.stale.kind == "code" for s in specs)
    if old:
        lines.append(f"{old} run{'s' if old > 1 else ''} by other code (another bncli version or a local change) "
                     "trained again")
    return lines
