"""bncli: see, measure and trust what Batch Normalization does.

From Python (e.g. a notebook), ``bncli.train``, ``bncli.sweep`` and ``bncli.load`` run or reopen an experiment and
return its results (see ``bncli.api``). They are imported on first use, so that ``import bncli`` and the command
line start fast.
"""

from ._version import __version__

__all__ = ["__version__", "Results", "load", "sweep", "train"]


def __getattr__(name):
    if name in ("train", "sweep", "load", "Results"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'bncli' has no attribute {name!r}")
