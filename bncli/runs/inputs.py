"""What a plan needs before anything runs: its dataset (loaded once per process) and a folder it may write to."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .. import atomic
from ..config import DataConfig, ExperimentConfig, Source
from ..data import DataCorruptError, DataError, load_dataset
from ..errors import UsageError


@lru_cache(maxsize=4)
def _dataset(data_json: str, dtype: str):
    from .arrays import cached_dataset

    return cached_dataset(DataConfig.model_validate_json(data_json), dtype, load_dataset)


def dataset_for(cfg: ExperimentConfig):
    """Loaded once per process and data config (a worker trains many runs on the same data)."""
    return _dataset(cfg.data.model_dump_json(), cfg.train.dtype)


def check_with_data(cfg: ExperimentConfig, src: Source):
    """Checks that need the dataset, raised as config errors pointing at the key. Returns the dataset."""
    try:
        data = dataset_for(cfg)
    except DataCorruptError:
        raise  # a damaged or hostile file: a runtime failure naming the file (exit 1)
    except DataError as e:  # missing files, unknown name: a config error at data.name (exit 2)
        raise src.error(("data", "name"), str(e)) from None
    n = len(data.X_train)
    if cfg.train.batch_size > n:
        raise src.error(("train", "batch_size"),
                        f"{cfg.train.batch_size} is larger than the training split ({n} examples)")
    return data


def prepare_output(out_dir: Path):
    try:
        atomic.check_writable(out_dir)
    except OSError as e:
        raise UsageError(f"--out {out_dir}: cannot write there ({e.strerror or e})") from None
