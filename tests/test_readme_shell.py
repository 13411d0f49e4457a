"""Every shell line of the README works as written, pasted into bash or zsh (macOS's default shell):

- no comments inside ```bash blocks: an interactive zsh without `interactivecomments` (the default) passes `# ...`
  to the command as arguments;
- nothing a shell would expand left unquoted: zsh stops at a glob that matches nothing (`model.bn=[none,before]`),
  bash passes it on or expands it, depending on the folder;
- each line parses (`bash -n`, `zsh -n`) and gives the same arguments in both shells;
- each `bncli` line is accepted by bncli's own command line: the command and its options exist, values have the
  right type (parsed in process, nothing run).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_readme import README, fenced_blocks

LINES = [line for lang, body in fenced_blocks(README.read_text(encoding="utf-8")) if lang == "bash"
         for line in body.splitlines() if line.strip()]
BNCLI_LINES = [line for line in LINES if line.startswith("bncli ")]
SHELLS = {"bash": ["bash", "--norc", "--noprofile"], "zsh": ["zsh", "-f"]}


def unquoted(line: str) -> str:
    """The characters of ``line`` that no quote protects (quoted text and its quotes dropped)."""
    out, quote, escaped = [], None, False
    for ch in line:
        if escaped:
            escaped = False
        elif quote:
            quote = None if ch == quote else quote
        elif ch == "\\":
            escaped = True
        elif ch in "'\"":
            quote = ch
        else:
            out.append(ch)
    return "".join(out)


def test_the_readme_has_shell_lines():
    assert len(LINES) >= 15 and len(BNCLI_LINES) >= 8


def test_unquoted_is_strict():
    assert unquoted("bncli train x 'model.bn=[none,before]'") == "bncli train x "
    assert "[" in unquoted("bncli train x model.bn=[none,before]")


@pytest.mark.parametrize("line", LINES)
def test_no_comment_and_no_unquoted_glob(line):
    bare = unquoted(line)
    assert not re.search(r"(^|\s)#", bare), f"a comment in a shell block (zsh passes it on as arguments): {line}"
    globs = re.sub(r"\$\(|\$\{[^}]*\}", "", bare)  # $(...) and ${...} are substitutions, not globs
    assert not re.search(r"[\[\]*?]|(?<![$&|<>])\((?!\()", globs.replace("$(", "")), f"unquoted glob: {line}"


def _argv(shell: str, line: str) -> list[str]:
    """What each command of ``line`` receives, as the shell splits it (commands replaced by a printer)."""
    stub = "; ".join(f"{name}() {{ printf '%s\\0' {name!r} \"$@\"; printf '\\n'; }}"
                     for name in ("bncli", "python", "python3", "pip", "export_", "BNCLI_FUZZ"))
    line = re.sub(r"^export ", "export_ ", line)
    r = subprocess.run([*SHELLS[shell], "-c", f"{stub}; export_() {{ printf '%s\\0' export \"$@\"; }}; . () {{ :; }};"
                        f" {line}"], capture_output=True, text=True, timeout=20, cwd=README.parent)
    assert r.returncode == 0, f"{shell}: {r.stderr.strip()}"
    return r.stdout.split("\0")


@pytest.mark.parametrize("line", LINES)
def test_parses_in_bash_and_zsh_alike(line):
    for shell in SHELLS:
        if shutil.which(shell) is None:
            continue
        r = subprocess.run([*SHELLS[shell], "-n", "-c", line], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, f"{shell} -n: {r.stderr.strip()}: {line}"
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed here; the static checks above still ran")
    assert _argv("bash", line) == _argv("zsh", line)


def _parse(args: list[str]):
    """bncli's own parse of ``args`` (global flags moved as bncli.cli.main moves them), without running it. (Typer
    may carry its own copy of click, so groups are recognised by what they do, not by click's class.)"""
    import typer.main

    from bncli.cli import GLOBAL_FLAGS, app

    def left(ctx):  # what a group leaves for its subcommand (click < 8.2 keeps the name in protected_args)
        return [*(getattr(ctx, "protected_args", None) or getattr(ctx, "_protected_args", None) or []), *ctx.args]

    args = [a for a in args if a in GLOBAL_FLAGS] + [a for a in args if a not in GLOBAL_FLAGS]
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("bncli", list(args))
    while hasattr(cmd, "resolve_command"):
        name, cmd, rest = cmd.resolve_command(ctx, left(ctx))
        ctx = cmd.make_context(name, rest, parent=ctx)
    return cmd


@pytest.mark.parametrize("line", BNCLI_LINES)
def test_bncli_accepts_the_line(line):
    import shlex

    args = shlex.split(line)[1:]
    assert _parse(args) is not None


def test_the_parse_check_can_fail():
    for args, error in ((["train", "quickstart", "--no-such-option"], "NoSuchOption"),
                        (["report", "--workers", "many"], "BadParameter"), (["trian", "x"], "UsageError")):
        with pytest.raises(Exception) as e:
            _parse(args)
        assert type(e.value).__name__ == error and e.value.exit_code == 2, args
