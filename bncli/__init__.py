"""bncli: see, measure and trust what Batch Normalization does.

From Python (a notebook, a script, ``python -c``), ``bncli.train``, ``bncli.sweep``, ``bncli.lrfind``,
``bncli.report`` and ``bncli.load`` run or reopen an experiment and return its results (see ``bncli.api``); a call
in which runs failed raises ``bncli.RunsFailed``. They are imported on first use, so that ``import bncli`` and the
command line start fast (``dir(bncli)`` lists them all the same).
"""

import sys
import types

from ._version import __version__

_API = ("train", "sweep", "lrfind", "report", "load", "plan", "Results", "Plan", "RunsFailed")
_ERRORS = ("BncliError", "UsageError")
# bncli.lrfind and bncli.report are also the names of submodules (the library code the CLI calls). Python sets a
# submodule as an attribute of its package when it is imported, which would replace the API function: after the
# first bncli.report(...), bncli.report would be the module. So these two names are the submodules, made callable:
# calling one calls the API function of that name, and `bncli.report.run_report` (or a test patching a name in it)
# still reaches the module.
_CALLABLE_MODULES = ("lrfind", "report")

__all__ = ["__version__", *_API, *_ERRORS]


class _ApiModule(types.ModuleType):
    """A submodule that is also the API function of its name (see _CALLABLE_MODULES)."""

    def __call__(self, *args, **kwargs):
        return self._api_function()(*args, **kwargs)

    def _api_function(self):
        from . import api

        return getattr(api, self.__name__.rpartition(".")[2])

    @property
    def __signature__(self):  # what inspect.signature, help() and a notebook's call tips show
        import inspect

        return inspect.signature(self._api_function())


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        if name in _CALLABLE_MODULES and type(value) is types.ModuleType:
            value.__class__ = _ApiModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name):
    if name in _CALLABLE_MODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")  # set here (callable) by _Package.__setattr__
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _ERRORS:
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'bncli' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
