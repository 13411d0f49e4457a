"""`bncli report`: every claim of CLAIMS.md measured, pictured and judged.

    results/report-quick/   (or report-full)
        REPORT.md, report.html (figures embedded), report.json (every number)
        figures/            one or more figures per claim
        runs/<hash>/        every training run, shared by all studies (a run needed twice is trained once;
                            finished runs are reused when the report is run again)
        studies/<name>/     per-study summary.csv, range.csv, ranges.csv, sweep.json (as `bncli sweep`)
        .bncli.json         the kind of command and the files bncli wrote here (runs/owner.py)
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic
from ..config import ExperimentConfig, load_config
from ..errors import UsageError
from ..examples import SHIPPED
from ..runs import RunSpec, check_with_data, dispatch, plan, run_rows, sweep_points
from ..runs import owner  # not `claim`: the name of this package's claim.py
from ..sweeps import collect

STUDIES = ["c01_faster_training", "c02_lr_range", "c03_init_scale", "c04_regularization", "c05_test_time",
           "c06_placement", "c07_bias", "c08_gamma_beta", "c09_covariate_shift", "c10_depth", "c11_batch_size",
           "c12_cost", "c13_per_channel", "c11_batch_size_conv", "c14_why_bn"]
# Studies with no claim of their own: their runs are rows of another claim's analysis (CLAIMS.md C13: C11 on the
# convnet), named here with that claim's study.
SUPPORTING = {"c11_batch_size_conv": "c11_batch_size"}
# Claims judged on another claim's study (CLAIMS.md: one study serves C14, C15 and C16).
SHARED_STUDY = {15: "c14_why_bn", 16: "c14_why_bn"}
# Studies whose claims are measured in this process (deterministic checks, timings) rather than by training runs.
IN_PROCESS = {"c08_gamma_beta", "c12_cost"}


# What each study's analysis (report/ranges.py, report/mechanisms.py) reads from its config and runs, checked when
# the study is loaded — before anything is trained — so that an edited study yaml is refused with its file named
# instead of failing in its analysis after training:
#   sweep    the keys it sweeps, exactly (None: no sweep section), each with the values its analysis selects (they
#            must be among the key's values) or () when any grid does
#   arms     the BN placements it compares (model.bn, exactly: an extra arm would be mixed into its per-seed numbers)
#   measure  extra measurements it reads (train.measure); eval_train: it reads the training split's eval metrics
STUDY_NEEDS = {
    "c01_faster_training": {"sweep": {"model.activation": ("sigmoid", "relu"), "optimizer.lr": ()},
                            "arms": ("none", "before", "after")},
    "c02_lr_range": {"sweep": {"optimizer.name": (), "optimizer.lr": ()}, "range_key": "optimizer.lr",
                     "arms": ("none", "before")},
    "c03_init_scale": {"sweep": {"model.init_std": ()}, "range_key": "model.init_std", "arms": ("none", "before")},
    "c04_regularization": {"sweep": {"train.batch_size": ()}, "arms": ("none", "before"), "eval_train": True},
    "c05_test_time": {"sweep": {"model.bn_decay": ()}, "arms": ("before", "after"), "measure": ("eval_variants",)},
    "c06_placement": {"sweep": {"model.activation": ("sigmoid", "relu"), "optimizer.lr": ()},
                      "arms": ("none", "before", "after")},
    "c07_bias": {"sweep": {"model.bias_with_bn": (False, True)}, "arms": ("before",)},
    "c08_gamma_beta": {"sweep": None, "arms": ("before",)},
    "c09_covariate_shift": {"sweep": None, "arms": ("none", "before"), "measure": ("percentiles",)},
    "c10_depth": {"sweep": {"model.activation": ("sigmoid", "relu"), "model.depth": ()}, "range_key": "model.depth",
                  "arms": ("none", "before")},
    "c11_batch_size": {"sweep": {"train.batch_size": ()}, "range_key": "train.batch_size",
                       "arms": ("none", "before")},
    "c12_cost": {"sweep": None, "arms": ("none", "before")},
    "c13_per_channel": {"sweep": {"model.bn_per": ("channel", "activation")}, "arms": ("none", "before"),
                        "measure": ("shifted",)},
    "c11_batch_size_conv": {"sweep": {"model.bn_per": ("channel", "activation"), "train.batch_size": ()},
                            "arms": ("none", "before")},
    "c14_why_bn": {"sweep": {"optimizer.lr": ()}, "range_key": "optimizer.lr", "arms": ("none", "before", "noisy"),
                   "measure": ("percentiles", "ics", "smoothness")},
}


def check_study(name: str, cfg: ExperimentConfig, src) -> None:
    """A UsageError naming the study's yaml file (and line) unless ``cfg`` has what the analysis of ``name`` reads
    (see STUDY_NEEDS)."""
    need = STUDY_NEEDS[name]
    what = f"the analysis of {name}"
    want = need["sweep"]
    have = cfg.sweep.parameters if cfg.sweep is not None else None
    if want is None and have is not None:
        raise src.error(("sweep",), f"{what} takes no sweep (its runs are the arms x seeds of one setting); remove "
                                    "the sweep section")
    if want is not None:
        if have is None:
            raise src.error(("sweep",), f"{what} needs a sweep section sweeping {', '.join(want)}; this study has "
                                        "none")
        if set(have) != set(want):
            raise src.error(("sweep", "parameters"), f"{what} sweeps exactly {', '.join(want)}; this study sweeps "
                                                     f"{', '.join(have)}")
        for key, values in want.items():
            given = have[key].values
            lacking = [v for v in values if given is None or not any(v == g and type(v) is type(g) for g in given)]
            if lacking:
                raise src.error(("sweep", "parameters", key),
                                f"{what} compares {', '.join(map(_yaml, values))}: expected values: [...] including "
                                f"them (missing {', '.join(map(_yaml, lacking))})")
        rk = cfg.sweep.range_key
        if rk is not None and rk != need.get("range_key", rk):
            raise src.error(("sweep", "range_key"), f"{what} reads the usable range of {need['range_key']}, not "
                                                    f"{rk}")
    arms = need["arms"]
    if set(cfg.model.bn) != set(arms) or len(cfg.model.bn) != len(arms):
        raise src.error(("model", "bn"), f"{what} compares exactly the arms [{', '.join(arms)}]; this study has "
                                         f"[{', '.join(cfg.model.bn)}]")
    lacking = [m for m in need.get("measure", ()) if m not in cfg.train.measure]
    if lacking:
        raise src.error(("train", "measure"), f"{what} reads the measurement {lacking[0]}: add it to train.measure")
    if need.get("eval_train") and not cfg.train.eval_train:
        raise src.error(("train", "eval_train"), f"{what} reads the training split's eval-mode loss and accuracy: "
                                                 "needs train.eval_train: true")


def _yaml(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


@dataclass
class Study:
    name: str
    cfg: ExperimentConfig
    runs: list[RunSpec]
    path: Path
    rows: list[dict] = field(default_factory=list)  # filled after running: run summaries with their point


def _matches(study: str, wanted: str) -> bool:
    """--only C7, c7, c07 or c07_bias all select c07_bias."""
    m = re.fullmatch(r"[cC]0*(\d+)", wanted.strip())
    if m:
        return study == SHARED_STUDY.get(int(m[1])) or study.startswith(f"c{int(m[1]):02d}_")
    return study.startswith(wanted.lower())


def load_study(experiments: Path, name: str, full: bool, runs_dir: Path) -> Study:
    path = experiments / f"{name}.yaml"
    cfg, src = load_config(path)
    if full and cfg.full:
        cfg, src = load_config(path, cfg.full)
    check_study(name, cfg, src)
    check_with_data(cfg, src)
    runs = [] if name in IN_PROCESS else plan(cfg, src, runs_dir, sweep_points(cfg, src) if cfg.sweep else None)
    return Study(name, cfg, runs, path)


def plan_report(mode="quick", out_dir=None, experiments=None, only=None) -> tuple[Path, dict]:
    """(output folder, {study name: Study}) with every run planned, the finished ones marked done. The studies are
    the experiments shipped with bncli unless ``experiments`` names a folder (e.g. edited copies)."""
    experiments = SHIPPED if experiments is None else Path(experiments)
    try:
        is_dir = experiments.is_dir()
    except OSError:  # a name too long to look up, ...
        is_dir = False
    if not is_dir:
        raise UsageError(f"--experiments {str(experiments)[:200]}: not a folder; it should hold the claim experiments "
                         "(c01_*.yaml ...; `bncli examples DIR` copies the shipped ones out)")
    missing = [n for n in STUDIES if not (experiments / f"{n}.yaml").is_file()
               and (not only or any(_matches(n, o) for o in only))]
    if missing:
        raise UsageError(f"--experiments {experiments}: {missing[0]}.yaml is not there ({len(missing)} of the claim "
                         "experiments missing; `bncli examples DIR` copies the shipped ones out)")
    out_dir = Path(out_dir or f"results/report-{mode}")
    names = [n for n in STUDIES if not only or any(_matches(n, o) for o in only)]
    if not names:
        raise UsageError(f"--only {' '.join(only)}: no claim matches (expected claim ids C1 ... C16, or study names "
                         "such as c07_bias)")
    return out_dir, {n: load_study(experiments, n, mode == "full", out_dir / "runs") for n in names}


def run_report(mode="quick", out_dir=None, experiments=None, workers=1, executor=None, only=None,
               studies=None, on_progress=None, on_done=None, force=False):
    """Run what is missing (in parallel, through the run cache), analyse every claim, write the report. Killed or
    interrupted, it resumes: finished runs are kept and the next call trains only the rest. ``out_dir`` is held for
    the whole call (runs/owner.py; ``force``: write there even if it holds files bncli did not write or results of
    another command)."""
    from .registry import analyse
    from .render import write_report

    t0 = time.perf_counter()
    if studies is None:
        out_dir, studies = plan_report(mode, out_dir, experiments, only)
    out_dir = Path(out_dir or f"results/report-{mode}")
    with owner.claim(out_dir, "report", force=force):
        specs = [r for s in studies.values() for r in s.runs]
        n_trained = len({r.hash for r in specs if not r.done})
        failed = dispatch(specs, out_dir, workers=workers, executor=executor, on_progress=on_progress,
                          on_done=on_done)
        # report.json (what the folder is known by) withdrawn before the studies' tables and the figures are
        # rewritten, written again last: an interrupted report never shows old verdicts beside new figures
        owner.withdraw(out_dir, ("report.json",))
        for s in studies.values():
            gather(s, out_dir, failed)
        atomic.check_writable(out_dir / "figures")
        claims = analyse(studies, out_dir, mode)
        with owner.publishing(out_dir):
            return write_report(claims, studies, out_dir, mode, elapsed=time.perf_counter() - t0,
                                n_trained=n_trained, failed=failed)


def gather(s: Study, out_dir: Path, failed: list[dict], write=True):
    """Each planned run's summary with its sweep point, arm and seed; with ``write``, also the per-study tables as
    `bncli sweep` writes them."""
    if s.name in IN_PROCESS:
        return
    if write and s.cfg.sweep is not None:
        collect(s.cfg, out_dir / "studies" / s.name, s.runs, failed)
    s.rows = run_rows(s.runs, failed)


def plot_report(d: Path, out: Path, fmt: str):
    """`bncli plot results/report-quick`: redraw every claim figure into ``out/figures`` from the figure specs the
    report stored (figures/figures.json, see ``figspec``). Reads nothing else: no experiments, dataset or run
    folders; nothing is trained or timed. A report without specs (older bncli) is a UsageError."""
    from .figspec import replay

    return replay(Path(d), Path(out) / "figures", fmt)
