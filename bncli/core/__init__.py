"""The pure NumPy core: arrays in, arrays out. No I/O, no printing, no global RNG."""

from .batchnorm import (BatchNorm, BatchOfOneError, batchnorm_backward, batchnorm_forward, bn_backward,
                        bn_eval_forward, bn_train_forward, fold_into_dense)
from .layers import Activation, Dense, cross_entropy_eval, init_weights, softmax_cross_entropy
from .model import BN_IMPLS, MLP, PLACEMENTS
from .noise import NoisyShift
from .optim import OPTIMIZERS, SCHEDULES, Optimizer, lr_at

__all__ = [
    "Activation", "BN_IMPLS", "BatchNorm", "BatchOfOneError", "Dense", "MLP", "NoisyShift", "OPTIMIZERS", "Optimizer",
    "PLACEMENTS", "SCHEDULES", "batchnorm_backward", "batchnorm_forward", "bn_backward", "bn_eval_forward",
    "bn_train_forward", "cross_entropy_eval", "fold_into_dense", "init_weights", "lr_at", "softmax_cross_entropy",
]
