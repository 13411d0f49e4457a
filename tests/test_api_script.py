"""The Python API from an ordinary script (no ``if __name__ == "__main__":`` guard), a ``python -`` heredoc and
``python -c``, with worker processes: spawned workers must not re-run the caller's main module (issue 25, item 2).
Real subprocesses: the point is what multiprocessing does with the main module of a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sweep_helpers import proc_env

from tiny import tiny_config

# Printed once per execution of the caller's code: a worker that re-ran the script would print it again.
CODE = """\
import bncli
print("caller ran")
r = bncli.train("tiny.yaml", "train.steps=20", out="out", workers=2, progress=False)
print(json.dumps({"status": sorted(x["status"] for x in r.runs), "file": globals().get("__file__"),
                  "spec": getattr(__spec__, "name", None)}))
"""


@pytest.mark.parametrize("how", ["script", "heredoc", "dash-c", "dash-m"])
def test_the_api_runs_its_workers_from_a_script_a_heredoc_and_dash_c(tmp_path, how):
    (tmp_path / "tiny.yaml").write_text(tiny_config("tinyscript"))
    code = "import json\n" + CODE
    if how == "script":
        (tmp_path / "s.py").write_text(code)
        args, stdin = [sys.executable, "s.py"], None
    elif how == "heredoc":
        args, stdin = [sys.executable, "-"], code
    elif how == "dash-m":  # the main module named by its spec (multiprocessing imports it again by name)
        (tmp_path / "mymain.py").write_text(code)
        args, stdin = [sys.executable, "-m", "mymain"], None
    else:
        args, stdin = [sys.executable, "-c", code], None
    r = subprocess.run(args, input=stdin, cwd=tmp_path, env=proc_env(), capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "multiprocessing" not in r.stderr and "Error" not in r.stderr, r.stderr
    lines = r.stdout.splitlines()
    assert lines.count("caller ran") == 1, r.stdout  # the workers did not run the caller's code again
    got = json.loads(lines[-1])
    assert got["status"] == ["ok"] * 4, got  # 2 arms x 2 seeds, trained by the workers
    # the main module's attributes are restored once the workers are started
    want_file = {"script": str(tmp_path / "s.py"), "heredoc": "<stdin>", "dash-c": None,
                 "dash-m": str(tmp_path / "mymain.py")}[how]
    assert got["file"] == want_file and got["spec"] == ("mymain" if how == "dash-m" else None), got
    assert len(list((tmp_path / "out" / "runs").iterdir())) == 4


def test_a_failed_run_ends_a_script_with_the_error_not_exit_0(tmp_path):
    """The README's example as a script whose runs fail (a config the workers cannot train): the call raises."""
    (tmp_path / "tiny.yaml").write_text(tiny_config("tinyscript"))
    hook = tmp_path / "hook"
    hook.mkdir()
    # in bncli's spawned workers only, training fails
    (hook / "sitecustomize.py").write_text(
        "import multiprocessing\n"
        "import bncli.runs.dispatcher as d\n"
        "real = d.train_run\n"
        "def boom(*a, **k):\n"
        "    if multiprocessing.current_process().name != 'MainProcess':\n"
        "        raise RuntimeError('boom in the worker')\n"
        "    return real(*a, **k)\n"
        "d.train_run = boom\n")
    (tmp_path / "s.py").write_text(
        "import bncli\n"
        "try:\n"
        "    bncli.train('tiny.yaml', out='out', workers=2, progress=False)\n"
        "except bncli.RunsFailed as e:\n"
        "    print('RAISED', len(e.results.runs), e)\n"
        "    raise SystemExit(3)\n")
    env = proc_env()
    env["PYTHONPATH"] = os.pathsep.join([str(hook), *filter(None, [env.get("PYTHONPATH")])])
    r = subprocess.run([sys.executable, "s.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.stdout.startswith("RAISED 4 bncli.train: 4 of 4 runs failed") and "boom in the worker" in r.stdout
