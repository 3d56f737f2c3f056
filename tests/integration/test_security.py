"""The promises of docs/security.md that are not about sockets (those are in
``test_listening_sockets.py``): strings from a run reach the HTML report escaped, no
environment variable is stored with a result, external commands never go through a shell,
and a SIGKILLed run's namespaces are removed by the next one."""

from __future__ import annotations

import ast
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from distbench.netem import namespaces

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CLI = [sys.executable, "-m", "distbench.cli.main"]
SRC = Path(__file__).resolve().parents[2] / "src" / "distbench"
SCRIPT = "<script>alert(1)</script>"

USER_MODEL = f"""
import torch
from torch import nn


class Good(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class Bad(Good):
    # builds and passes the checks like Good; fails in a training step, inside the rank
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            raise ValueError({SCRIPT!r})
        return super().forward(x)


# class names a file can hold, though no `class` statement can write them
Good.__name__ = Good.__qualname__ = "<script>Good"
Bad.__name__ = Bad.__qualname__ = "<script>Bad"
globals()["<script>Good"] = Good
globals()["<script>Bad"] = Bad
"""


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


def test_report_escapes_model_names_paths_and_errors(tmp_path: Path) -> None:
    folder = tmp_path / "<script>"
    folder.mkdir()
    model_file = folder / "<script>.py"
    model_file.write_text(textwrap.dedent(USER_MODEL))
    small = ["--input-size", "8", "--batch-size", "4", "--steps", "3", "--warmup", "1"]
    good = cli("run", "--model", f"{model_file}:<script>Good", *small, "--db", "r.db", cwd=tmp_path)
    assert good.returncode == 0, good.stderr[-1500:]
    bad = cli("run", "--model", f"{model_file}:<script>Bad", *small, "--db", "r.db", cwd=tmp_path)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    with sqlite3.connect(tmp_path / "r.db") as db:
        errors = [e for (e,) in db.execute("SELECT error FROM runs WHERE status = 'failed'")]
    assert errors and SCRIPT in errors[0]  # the string really reached the store
    made = cli("report", "--db", "r.db", "--out", "out", cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-1500:]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "&lt;script&gt;" in html  # shown, as text
    assert "<script" not in html.lower()


def test_no_environment_variable_is_stored_with_a_result(tmp_path: Path) -> None:
    canary = "distbench-canary-7f3a9c"
    env = {**os.environ, "DISTBENCH_TEST_SECRET": canary, "AWS_SECRET_ACCESS_KEY": canary}
    done = cli("run", "--model", "lenet5", "--steps", "3", "--warmup", "1", "--db", "r.db",
               cwd=tmp_path, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    exported = cli("results", "--db", "r.db", "--format", "json", cwd=tmp_path)
    assert exported.returncode == 0 and canary not in exported.stdout
    stored = [tmp_path / "r.db", *(tmp_path / "distbench-runs").rglob("*")]
    leaked = [p for p in stored if p.is_file() and canary.encode() in p.read_bytes()]
    assert not leaked, leaked


def _shell_calls(tree: ast.AST) -> list[int]:
    """Lines that run a command through a shell: ``shell=True``, ``os.system``,
    ``os.popen``, or an argument list that starts ``sh -c`` / ``bash -c``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr in ("system", "popen")
                and isinstance(func.value, ast.Name)
                and func.value.id == "os"
            ):
                lines.append(node.lineno)
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    lines.append(node.lineno)
            texts = [a.value for a in node.args if isinstance(a, ast.Constant)]
            for first, second in itertools.pairwise(texts):
                if first in ("sh", "bash", "/bin/sh") and second == "-c":
                    lines.append(node.lineno)
        if isinstance(node, ast.List):
            texts = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            if texts[:2] in (["sh", "-c"], ["bash", "-c"], ["/bin/sh", "-c"]):
                lines.append(node.lineno)
    return lines


def test_external_commands_are_argument_lists_never_a_shell() -> None:
    found = {
        str(path.relative_to(SRC)): lines
        for path in sorted(SRC.rglob("*.py"))
        if (lines := _shell_calls(ast.parse(path.read_text())))
    }
    assert not found, found
    # the check itself sees each form
    for bad in ('os.system("x")', 'run("x", shell=True)', 'run(["sh", "-c", "x"])'):
        assert _shell_calls(ast.parse(bad)), bad


@pytest.mark.skipif(not namespaces.can_isolate(), reason="needs root and iproute2")
def test_a_sigkilled_runs_loopback_namespace_is_removed_by_the_next_run() -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time\nfrom distbench.netem.namespaces import loopback_only\n"
         "with loopback_only() as inside:\n    print(inside[-1], flush=True)\n"
         "    time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    namespace = holder.stdout.readline().strip()
    assert namespace in namespaces.our_namespaces()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert namespace in namespaces.our_namespaces()  # SIGKILL leaves it behind ...
    deadline = time.monotonic() + 30
    while namespace in namespaces.our_namespaces() and time.monotonic() < deadline:
        namespaces.cleanup_stale()  # ... and the next run's first step removes it
    assert namespace not in namespaces.our_namespaces()
