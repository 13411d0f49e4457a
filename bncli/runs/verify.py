"""Whether a run folder may be reused: a finished run is never trained again, so what a folder says is believed only
after it verifies, the way a database checks a page before it trusts it.

A run folder verifies when
  - it is a real folder (not a symbolic link) holding only regular files, each named in its meta.json with the
    SHA-256 it was written with, and none missing (a stray or deleted file, an edited number, fail);
  - meta.json records the code that computes runs now, one BLAS thread, and the run key that is the folder's name;
  - its config.yaml, with the data fingerprint meta.json records, hashes to that key (an edited learning rate, a
    folder copied under another run's name, fail), and that key is the one the plan asked for (other data, fail);
  - summary.json's numbers are the kind a run produces (accuracies in [0, 1], finite non-negative losses and steps,
    a status that agrees with meta.json).
Anything else is a reason, in a few words, and the run is trained again. Every read is bounded (bncli.safeio).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from pathlib import Path

import yaml

from .. import safeio
from ..config import ExperimentConfig
from .provenance import code_hash

META_LIMIT = 1 << 20  # meta.json, config.yaml, summary.json: a few KB each
FILE_LIMIT = 256 << 20  # a run's tables (percentiles of a long run are the largest: a few MB)
REQUIRED = ("config.yaml", "metrics.csv", "summary.json")
STATUSES = ("ok", "diverged")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # safe either way; the C one is 10x faster


def run_key(config_hash: str, data_fingerprint: str) -> str:
    """The name of a run's folder: the identity of its computation (the config hash) and of its data (the
    fingerprint of the arrays it trained and was evaluated on), so that other data never reuse a run."""
    return hashlib.sha256(f"{config_hash}:{data_fingerprint}".encode()).hexdigest()[:16]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def meta_checksum(meta: dict, field: str = "meta_sha256") -> str:
    """A JSON document that checks itself (a run's meta.json, a cache entry's): the SHA-256 of its canonical JSON
    without ``field``, the field that holds it (it cannot hold the checksum of its own bytes), so an edited timing
    or version is seen as well as an edited key."""
    return sha256(json.dumps({k: v for k, v in meta.items() if k != field}, sort_keys=True).encode())


class Stale(Exception):
    """A run folder that cannot be reused; ``kind`` "code" (by other code: expected after an upgrade) or "damaged"
    (anything else: said run by run)."""

    def __init__(self, reason: str, kind: str = "damaged"):
        super().__init__(reason)
        self.kind = kind


def verify(run_dir, key: str | None = None, *, current: bool = True) -> dict:
    """The run's summary if the folder verifies (see the module docstring), else ``Stale`` with the reason.
    ``key``: the run key the plan expects (default: the folder's name). A missing folder is ``FileNotFoundError``.
    ``current=False`` (drawing stored numbers): a run by other code or with other BLAS threads is fine, as long as
    its files are the ones it wrote."""
    run_dir = Path(run_dir)
    key = run_dir.name if key is None else key
    st = os.lstat(run_dir)  # FileNotFoundError: not trained yet
    if stat.S_ISLNK(st.st_mode):
        raise Stale("the run folder is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        raise Stale("the run folder is not a folder")
    if run_dir.name != key:
        raise Stale(f"the folder is named {run_dir.name}, not {key}")
    raw = _read_bytes(run_dir, "meta.json", META_LIMIT)
    meta = _parse_json("meta.json", raw)
    if current and meta.get("code_hash") != code_hash():
        raise Stale("computed by other code", "code")
    # its content against its own checksum, and its bytes against what store.dumps writes for that content (indent
    # 2, a final newline): no edit hides in white space either
    if meta.get("meta_sha256") != meta_checksum(meta) or (json.dumps(meta, indent=2) + "\n").encode() != raw:
        raise Stale("meta.json does not match its own checksum (edited?)")
    if meta.get("run_key") != key:
        raise Stale(f"meta.json names run {_short(meta.get('run_key'))}, not {key}")
    if current and meta.get("blas_threads") != 1:
        raise Stale(f"computed with {_short(meta.get('blas_threads'))} BLAS threads, not 1")
    files = meta.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise Stale("meta.json lists no file checksums")
    present = _files(run_dir)
    for name in sorted(set(REQUIRED) | set(files)):
        if name not in present:
            raise Stale(f"{name} is missing")
    extra = sorted(set(present) - set(files) - {"meta.json"})
    if extra:
        raise Stale(f"{_short(extra[0])} is not a file this run wrote")
    written = {}  # each file read once: checked, then config.yaml and summary.json parsed from these bytes
    for name in sorted(files):
        written[name] = _read_bytes(run_dir, name, FILE_LIMIT)
        if sha256(written[name]) != files[name]:
            raise Stale(f"{_short(name)} does not match the checksum in meta.json")
    cfg = _parse_config(written["config.yaml"])
    fp = meta.get("data_fingerprint")
    if not isinstance(fp, str) or run_key(cfg.hash(), fp) != key:
        raise Stale("config.yaml and the data fingerprint do not hash to the folder's name")
    if meta.get("config_hash") != cfg.hash():
        raise Stale("meta.json names another config")
    summary = _parse_json("summary.json", written["summary.json"])
    _check_summary(summary, meta, cfg)
    return summary


def _short(v, limit=40) -> str:
    """A value for a message: a plain file name as it is, anything else quoted; cut short."""
    text = v if isinstance(v, str) and v.isprintable() and '"' not in v and "'" not in v else repr(v)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def _files(run_dir: Path) -> set:
    """The names in the folder; any entry that is not a regular file (a link, a folder, a FIFO) is Stale."""
    out = set()
    with os.scandir(run_dir) as it:
        for e in it:
            if e.is_symlink():
                raise Stale(f"{_short(e.name)} is a symbolic link")
            if not e.is_file(follow_symlinks=False):
                raise Stale(f"{_short(e.name)} is not a regular file")
            out.add(e.name)
            if len(out) > 1000:  # bncli writes a handful
                raise Stale("the folder holds more than 1,000 entries")
    return out


def _read_bytes(run_dir: Path, name: str, limit: int) -> bytes:
    try:
        return safeio.read_bytes(run_dir / name, limit, follow=False)
    except FileNotFoundError:
        raise Stale(f"{_short(name)} is missing") from None
    except (OSError, ValueError) as e:
        raise Stale(f"{_short(name)} cannot be read ({e})") from None


def _parse_json(name: str, raw: bytes) -> dict:
    try:
        doc = safeio.loads(raw)
    except ValueError as e:  # not JSON, not UTF-8, nested too deeply
        raise Stale(f"{name} cannot be read ({e})") from None
    if not isinstance(doc, dict):
        raise Stale(f"{name} is not a JSON object")
    return doc


def read_config(path: Path) -> ExperimentConfig:
    """A run's config.yaml, read bounded and validated; Stale if it is not a valid run config."""
    try:
        raw = safeio.read_bytes(path, META_LIMIT, follow=False)
    except (OSError, ValueError) as e:
        raise Stale(f"config.yaml cannot be read ({e})") from None
    return _parse_config(raw)


def _parse_config(raw: bytes) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(yaml.load(raw.decode("utf-8"), Loader=_Loader))  # noqa: S506 - safe
    except (ValueError, yaml.YAMLError, RecursionError) as e:
        raise Stale(f"config.yaml is not a valid run config ({type(e).__name__})") from None


def _number(v, lo=0.0, hi=math.inf, none=True) -> bool:
    if v is None:
        return none
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi


def _check_summary(s: dict, meta: dict, cfg: ExperimentConfig):
    status = s.get("status")
    if status not in STATUSES or status != meta.get("status"):
        raise Stale(f"summary.json's status {_short(status)} disagrees with meta.json's {_short(meta.get('status'))}")
    if s.get("arm") != cfg.model.bn[0] or s.get("seed") != cfg.train.seeds[0]:
        raise Stale("summary.json names another arm or seed than config.yaml")
    # A diverged run's last numbers may be NaN (stored as null); so may an ok run's tail mean or mean loss.
    for k in ("final_test_acc", "best_test_acc", "tail_test_acc", "final_train_acc"):
        v = s.get(k)
        if not (_number(v, 0.0, 1.0) or (v is None and (status == "diverged" or k == "tail_test_acc"))):
            raise Stale(f"summary.json's {k} is {_short(v)}, not an accuracy")
    total = s.get("total_steps")
    if not (isinstance(total, int) and not isinstance(total, bool) and total >= 0):
        raise Stale(f"summary.json's total_steps is {_short(total)}")
    for k in ("steps_to_target", "best_step", "steps_done", "diverged_at_step"):
        if not _number(s.get(k), 0, total):
            raise Stale(f"summary.json's {k} is {_short(s.get(k))}, outside 0..{total}")
    for k in ("final_train_loss", "final_test_loss", "mean_train_loss", "initial_test_loss", "time_s"):
        v = s.get(k)
        if not (_number(v) or (v is None and (status == "diverged" or k == "mean_train_loss"))):
            raise Stale(f"summary.json's {k} is {_short(v)}")
