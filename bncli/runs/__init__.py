"""The run layer: plan (a config -> run specs keyed by config hash), store (one directory per run, one CSV and JSON
writer), dispatch (one function to the local pool or Dask). `bncli train`, `sweep` and `report` all go through it."""

from .dispatcher import dispatch, run_task
from .grid import grid_values, points
from .inputs import check_with_data, data_fingerprint, dataset_for, prepare_output
from .plan import RunSpec, plan, stale_lines, sweep_points
from .provenance import code_hash, platform_info, versions
from .store import check_run, csv_text, dict_csv, dumps, is_current, read_metrics, read_summary, run_rows, write_run
from .verify import Stale, run_key, verify

__all__ = ["RunSpec", "Stale", "check_run", "check_with_data", "data_fingerprint", "run_key", "stale_lines", "verify", "code_hash", "csv_text", "dataset_for", "dict_csv", "dispatch", "dumps", "grid_values",
           "is_current", "plan", "platform_info", "points", "prepare_output", "read_metrics", "read_summary", "run_rows", "run_task",
           "sweep_points", "versions", "write_run"]
