"""What a run costs in matrix products, from its config and the sizes of its data — the one count behind the
progress ETA (runs of a report differ a thousandfold in size: a run count is no clock) and the matmul floor of
benchmarks/bench_e2e.py.

Counted: the dense layers' products, 2·m·k·n FLOPs each. A training step of batch b does, per layer of d_in x
d_out, the forward product, dW and (except the first layer, which needs no dX) dX. A convolution counts as the
dense layer its im2col product is: per example, H'·W' rows of kh·kw·C_in values times a (kh·kw·C_in, C_out)
matrix. An evaluation is one forward product per example of every split it evaluates. Everything else (activations, BN, the optimizer, Python) is what a
measured time adds to this floor.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ExperimentConfig, resolved_budget


@dataclass(frozen=True)
class Work:
    steps: int
    train_flops: float  # the matrix products of every training step
    eval_flops: float  # the forward products of every evaluation pass

    @property
    def flops(self) -> float:
        return self.train_flops + self.eval_flops


def dims(cfg: ExperimentConfig, n_features: int, n_classes: int) -> list[int]:
    """(d_0, ..., d_L) of the dense layers; with convolutions, d_0 is the flattened last feature map."""
    return [n_features, *cfg.model.hidden, n_classes]


def products(cfg: ExperimentConfig, data) -> list[tuple[int, int, int]]:
    """Every layer's product per example as (rows, k, n): a dense layer is (1, d_in, d_out), a convolution
    (H'·W', kh·kw·C_in, C_out)."""
    sizes = [data.X_train.shape[1], *cfg.model.hidden, data.n_classes]
    if not cfg.model.conv:
        return [(1, a, b) for a, b in zip(sizes, sizes[1:])]
    from ..core.convnet import ConvSpec, conv_products, conv_shapes

    specs = [ConvSpec(**s.model_dump()) for s in cfg.model.conv]
    out = conv_products(data.image_shape, specs)
    h, w, ch = conv_shapes(data.image_shape, specs)[-1][1]
    sizes[0] = h * w * ch
    return out + [(1, a, b) for a, b in zip(sizes, sizes[1:])]


def step_flops(layers, batch: int) -> float:
    """The products of one training step on ``batch`` examples: ``layers`` as `products` gives them, or the dense
    sizes (d_0, ..., d_L)."""
    layers = _as_products(layers)
    return 2.0 * batch * sum((2 if i == 0 else 3) * r * k * n for i, (r, k, n) in enumerate(layers))


def forward_flops(layers, examples: int) -> float:
    return 2.0 * examples * sum(r * k * n for r, k, n in _as_products(layers))


def _as_products(layers):
    if layers and isinstance(layers[0], int):
        return [(1, a, b) for a, b in zip(layers, layers[1:])]
    return layers


def run_work(cfg: ExperimentConfig, data) -> Work:
    """The work of one single-arm, single-seed run of ``cfg`` on ``data`` (a Dataset, or anything with X_train,
    X_test, X_val (or None) and n_classes)."""
    tc = cfg.train
    n_train = len(data.X_train)
    steps, per_epoch = resolved_budget(tc, n_train)
    sizes = products(cfg, data)
    every = tc.eval_every or per_epoch
    evals = 1 + steps // every + (1 if steps % every else 0)  # the first, every ``every`` steps, the last
    per_eval = len(data.X_test) + (len(data.X_val) if data.X_val is not None else 0) \
        + (n_train if tc.eval_train else 0)
    return Work(steps, steps * step_flops(sizes, tc.batch_size), evals * forward_flops(sizes, per_eval))


def plan_work(specs) -> dict:
    """{run hash: Work} for the runs of a plan. Specs are grouped by data config, so each dataset is looked up once
    (`dataset_for` keeps a few per process; planning has already loaded them)."""
    from .inputs import dataset_for

    by_data: dict[str, list] = {}
    for s in specs:
        by_data.setdefault(s.config.data.model_dump_json() + s.config.train.dtype, []).append(s)
    out = {}
    for group in by_data.values():
        data = dataset_for(group[0].config)
        for s in group:
            out[s.hash] = run_work(s.config, data)
    return out
