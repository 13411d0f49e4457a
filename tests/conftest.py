"""The whole suite writes its caches (decoded datasets, see bncli/runs/arrays.py) into a folder of its own, never
into the user's ~/.cache; tests that need a particular cache location set XDG_CACHE_HOME themselves."""

from __future__ import annotations

import os
import shutil
import tempfile


def pytest_configure(config):
    config._bncli_cache = tempfile.mkdtemp(prefix="bncli-test-cache-")
    os.environ["XDG_CACHE_HOME"] = config._bncli_cache


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "_bncli_cache", ""), ignore_errors=True)
