"""What a plan needs before anything runs: its dataset (loaded once per process) and a folder it may write to."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .. import atomic
from ..config import DataConfig, ExperimentConfig, Source
from ..data import DataCorruptError, DataError, load_dataset
from ..errors import UsageError


@lru_cache(maxsize=4)
def _loaded(data_json: str, dtype: str) -> dict:
    """The dataset, the checksums of its arrays if a cache entry verified them (else None), and its fingerprint once
    asked for: kept together, so a fingerprint always names the very arrays ``dataset_for`` hands out."""
    from .arrays import cached_with_sums

    data, sums = cached_with_sums(DataConfig.model_validate_json(data_json), dtype, load_dataset)
    return {"data": data, "sums": sums, "fingerprint": None}


def _dataset(data_json: str, dtype: str):
    return _loaded(data_json, dtype)["data"]


def dataset_for(cfg: ExperimentConfig):
    """Loaded once per process and data config (a worker trains many runs on the same data)."""
    return _dataset(cfg.data.model_dump_json(), cfg.train.dtype)


def data_fingerprint(cfg: ExperimentConfig) -> str:
    """32 hex characters naming the arrays a run trains and evaluates on (every split's shape, dtype and bytes, and
    the number of classes): the same data found at another path give the same one, other data never do. Once per
    process and data config; a verified cache entry's checksums are reused rather than hashed again."""
    from .arrays import fingerprint

    got = _loaded(cfg.data.model_dump_json(), cfg.train.dtype)
    if got["fingerprint"] is None:
        got["fingerprint"] = fingerprint(got["data"], got["sums"])
    return got["fingerprint"]


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
    if cfg.model.conv:
        check_conv(cfg, src, data)
    layer = cfg.train.percentile_layer
    if layer is not None:
        names = [f"convact{i}" for i in range(1, len(cfg.model.conv) + 1)]
        names += [f"act{i}" for i in range(1, len(cfg.model.hidden) + 1)]
        if layer not in names:
            raise src.error(("train", "percentile_layer"), f"no activation layer {layer!r} in this model; expected "
                            f"one of {', '.join(names) or 'none (the model has no hidden layer)'}")
    if "shifted" in cfg.train.measure and data.image_shape is None:
        raise src.error(("train", "measure"), f"'shifted' translates images; data.name {cfg.data.name!r} is not "
                        "images (expected mnist-5k, mnist, fashion-mnist or cifar10)")
    return data


MAX_STEP_VALUES = 1 << 28  # values a convnet's training step holds per batch (im2col columns, feature maps): 1 GB


def check_conv(cfg: ExperimentConfig, src: Source, data):
    """Convolutions need images, kernels and pooling windows that fit the maps they slide over, and a batch whose
    im2col columns and feature maps fit in memory."""
    from ..config import MAX_HIDDEN_WEIGHTS
    from ..core.convnet import ConvShapeError, ConvSpec, conv_products, conv_shapes

    if data.image_shape is None:
        raise src.error(("model", "conv"), f"convolutions need image data; data.name {cfg.data.name!r} is not "
                        "images (expected mnist-5k, mnist, fashion-mnist or cifar10, or model.conv: [])")
    specs = [ConvSpec(**c.model_dump()) for c in cfg.model.conv]
    try:
        shapes = conv_shapes(data.image_shape, specs)
    except ConvShapeError as e:
        raise src.error(("model", "conv", e.index, e.key), f"{e} (image {'x'.join(map(str, data.image_shape))} "
                        "as C x H x W)") from None
    # per image: each convolution's im2col columns (rows x k) and a few feature maps of its output (rows x n)
    per_example = sum(r * (k + 4 * n) for r, k, n in conv_products(data.image_shape, specs))
    if per_example * cfg.train.batch_size > MAX_STEP_VALUES:
        raise src.error(("train", "batch_size"), f"{cfg.train.batch_size} x {per_example:,} values of im2col "
                        f"columns and feature maps per image = {per_example * cfg.train.batch_size:,}, more than "
                        f"{MAX_STEP_VALUES:,} per step; use a smaller batch or fewer/smaller convolution channels")
    h, w, ch = shapes[-1][1]
    first = (cfg.model.hidden or [data.n_classes])[0]
    if h * w * ch * first > MAX_HIDDEN_WEIGHTS:
        raise src.error(("model", "conv"), f"the last feature map ({h}x{w}x{ch}) times the first dense layer's "
                        f"{first} units is {h * w * ch * first:,} weights, more than {MAX_HIDDEN_WEIGHTS:,}; pool "
                        "more or use fewer channels")


def prepare_output(out_dir: Path):
    try:
        atomic.check_writable(out_dir)
    except OSError as e:
        raise UsageError(f"--out {out_dir}: cannot write there ({e.strerror or e})") from None
