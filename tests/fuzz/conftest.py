"""The fuzzing suite's folders and its tally: cases per family, printed at the end of the session."""

from __future__ import annotations

import pytest

from .harness import MPL_DIR, TALLY


@pytest.fixture(scope="session", autouse=True)
def matplotlib_cache(tmp_path_factory):
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("mplconfig")
    MPL_DIR["MPLCONFIGDIR"] = str(folder)
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env={**__import__("os").environ,
                   "MPLCONFIGDIR": str(folder)}, check=True, capture_output=True)


@pytest.fixture
def case_dir(tmp_path_factory):
    """A fresh folder per generated case (hypothesis runs many cases in one test function)."""
    return lambda: tmp_path_factory.mktemp("case")


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    families = sorted({f for f, _ in TALLY})
    terminalreporter.write_sep("-", "hostile-input cases (tests/fuzz)")
    for f in families:
        clean, failed = TALLY[f, "clean"], TALLY[f, "failed"]
        terminalreporter.write_line(f"{f:<38} {clean + failed:>5} cases, {clean:>5} clean, {failed:>3} not")
    total = sum(TALLY.values())
    terminalreporter.write_line(f"{'total':<38} {total:>5} cases, {sum(v for (f, o), v in TALLY.items() if o == 'clean'):>5} clean")
