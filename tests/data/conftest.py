"""Fixtures for the real-dataset tests: isolated data places and a local HTTP server (no internet)."""

from __future__ import annotations

import pytest

from .helpers import Server


@pytest.fixture(autouse=True)
def isolated_places(tmp_path, monkeypatch):
    """No test sees the real $BNCLI_DATA or ~/.cache: the cache is a temp folder, no mirror is set."""
    monkeypatch.delenv("BNCLI_DATA", raising=False)
    monkeypatch.delenv("BNCLI_DATA_MIRROR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache" / "bncli"


@pytest.fixture
def serve():
    servers = []

    def start(files, ranges=True):
        s = Server(files, ranges).__enter__()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.__exit__(None, None, None)
