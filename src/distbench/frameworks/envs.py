"""Virtual environments for the other frameworks, created and listed by ``distbench env``.

TensorFlow, MXNet and Horovod pin conflicting libraries (MXNet 1.9 needs NumPy 1.23; a
plain ``pip install horovod`` does not build against torch 2.13), so each one lives in its
own venv under a distbench-managed directory: ``$DISTBENCH_ENVS/<name>``, by default
``~/.cache/distbench/envs/<name>``. Start at ``ENV_SPECS`` (what each env contains) and
``install_env``. An env is usable only once its marker file ``distbench-env.json`` exists;
the marker is written last, after an import check, so an interrupted install is never
mistaken for a finished one (``env install`` wipes such a leftover and starts again).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distbench.errors import UserError

MARKER = "distbench-env.json"
DEFAULT_INSTALL_TIMEOUT = 1800.0
#: Printed by the import check as ``name==version`` lines.
_VERSION_SCRIPT = """
import importlib, importlib.metadata as md
for mod, dist in {pairs!r}:
    importlib.import_module(mod)
    print(f"{{dist}}=={{md.version(dist)}}")
"""

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class EnvSpec:
    """What one framework environment contains and how it is built."""

    name: str
    packages: tuple[str, ...]
    #: (import name, distribution name) pairs imported and versioned after the install.
    checks: tuple[tuple[str, str], ...]
    description: str
    #: See the main interpreter's packages (Horovod builds against the torch installed here,
    #: instead of downloading a second, multi-GB torch).
    system_site_packages: bool = False
    build_env: dict[str, str] = field(default_factory=dict)
    #: Packages built from their sdist with a source patch (Horovod's C++ standard).
    patched_sdists: tuple[str, ...] = ()


ENV_SPECS: dict[str, EnvSpec] = {
    "tensorflow": EnvSpec(
        "tensorflow",
        ("tensorflow-cpu~=2.21.0",),
        (("tensorflow", "tensorflow-cpu"), ("keras", "keras"), ("numpy", "numpy")),
        "TensorFlow (CPU) with Keras 3: MultiWorkerMirroredStrategy, ParameterServerStrategy",
    ),
    "mxnet": EnvSpec(
        "mxnet",
        ("mxnet==1.9.1", "numpy==1.23.5"),
        (("mxnet", "mxnet"), ("numpy", "numpy")),
        "MXNet 1.9.1 (Gluon, kvstore dist_sync/dist_async); NumPy pinned to 1.23.5",
    ),
    "horovod": EnvSpec(
        "horovod",
        (
            "cmake>=3.13,<4",
            "wheel",
            "setuptools<70",
            "packaging",
            "psutil",
            "pyyaml",
            "cloudpickle",
        ),
        (("horovod.torch", "horovod"), ("torch", "torch"), ("numpy", "numpy")),
        "Horovod 0.28.1 on this interpreter's torch (gloo, no MPI), built from source",
        system_site_packages=True,
        build_env={
            "HOROVOD_WITH_PYTORCH": "1",
            "HOROVOD_WITH_GLOO": "1",
            "HOROVOD_WITHOUT_MPI": "1",
            "HOROVOD_WITHOUT_TENSORFLOW": "1",
            "HOROVOD_WITHOUT_MXNET": "1",
            "HOROVOD_CPU_OPERATIONS": "gloo",
            # Horovod's bundled gloo asks for CMake < 3.5 compatibility.
            "CMAKE_POLICY_VERSION_MINIMUM": "3.5",
        },
        patched_sdists=("horovod==0.28.1",),
    ),
}


def envs_root() -> Path:
    """Where framework environments live: ``$DISTBENCH_ENVS`` or ``~/.cache/distbench/envs``."""
    override = os.environ.get("DISTBENCH_ENVS")
    return Path(override).expanduser() if override else Path.home() / ".cache/distbench/envs"


def env_dir(name: str) -> Path:
    return envs_root() / name


def env_python(name: str) -> Path:
    return env_dir(name) / "bin" / "python"


def get_spec(name: str) -> EnvSpec:
    if name not in ENV_SPECS:
        raise UserError(f"unknown environment '{name}' (known: {', '.join(ENV_SPECS)})")
    return ENV_SPECS[name]


def read_marker(name: str) -> dict[str, Any] | None:
    """The install record of a finished env, or None when absent or unfinished."""
    path = env_dir(name) / MARKER
    if not path.is_file() or not env_python(name).exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data


def is_installed(name: str) -> bool:
    return read_marker(name) is not None


def require_env(name: str) -> Path:
    """The env's python, or a UserError saying how to install it."""
    if not is_installed(name):
        raise UserError(
            f"the {name} environment is not installed; run "
            f"`distbench env install {name}` (it goes to {env_dir(name)})"
        )
    return env_python(name)


@dataclass
class EnvStatus:
    """One row of ``distbench env list``."""

    name: str
    installed: bool
    path: str
    versions: dict[str, str]
    installed_at: str | None
    description: str


def list_envs() -> list[EnvStatus]:
    rows = []
    for name, spec in ENV_SPECS.items():
        marker = read_marker(name)
        rows.append(
            EnvStatus(
                name,
                marker is not None,
                str(env_dir(name)),
                dict((marker or {}).get("versions", {})),
                (marker or {}).get("installed_at"),
                spec.description,
            )
        )
    return rows


# ------------------------------------------------------------------------------ installing


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def _run_logged(
    cmd: list[str],
    log: Path,
    deadline: _Deadline,
    progress: ProgressFn,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Run ``cmd`` appending its output to ``log``; report its latest line every few seconds;
    stop it at the deadline. Raises UserError with the log's tail on failure."""
    with log.open("ab") as handle:
        handle.write(f"\n$ {' '.join(cmd)}\n".encode())
        handle.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        last_report = 0.0
        try:
            while proc.poll() is None:
                if deadline.left() <= 0:
                    _stop(proc)
                    raise UserError(
                        f"install timed out after {deadline.seconds:g} s "
                        f"(raise it with --timeout); log: {log}"
                    )
                if time.monotonic() - last_report > 5:
                    progress(_last_line(log))
                    last_report = time.monotonic()
                time.sleep(0.5)
        except BaseException:
            _stop(proc)
            raise
    if proc.returncode != 0:
        raise UserError(
            f"`{' '.join(cmd[:4])} ...` failed (exit {proc.returncode}): "
            f"{_last_line(log, error=True)}; full log: {log}"
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def _last_line(log: Path, error: bool = False) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    if error:
        flagged = [ln for ln in lines if "error" in ln.lower()]
        lines = flagged or lines
    return (lines[-1] if lines else "")[:200]


def _pip(python: Path, *args: str) -> list[str]:
    return [str(python), "-m", "pip", "--disable-pip-version-check", *args]


def _patch_horovod(source: Path) -> None:
    """Horovod 0.28.1 asks CMake for C++14; torch 2.13's headers need C++17."""
    for path in source.rglob("CMakeLists.txt"):
        text = path.read_text()
        patched = text.replace("CMAKE_CXX_STANDARD 14", "CMAKE_CXX_STANDARD 17").replace(
            "-std=c++14", "-std=c++17"
        )
        if patched != text:
            path.write_text(patched)
    for path in source.rglob("*.cmake"):
        text = path.read_text()
        if "c++14" in text:
            path.write_text(text.replace("c++14", "c++17"))


def _install_patched(
    python: Path,
    requirement: str,
    spec: EnvSpec,
    log: Path,
    deadline: _Deadline,
    progress: ProgressFn,
) -> None:
    """Download the sdist, patch it, build it against the env's own packages."""
    with tempfile.TemporaryDirectory(prefix="distbench-sdist-") as tmp:
        work = Path(tmp)
        progress(f"downloading the {requirement} source")
        _run_logged(
            _pip(
                python,
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(work),
                requirement,
            ),
            log,
            deadline,
            progress,
        )
        archive = next(work.glob("*.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")
        source = next(p for p in work.iterdir() if p.is_dir())
        _patch_horovod(source)
        progress(f"building {requirement} (several minutes)")
        env = {**os.environ, **spec.build_env, "MAKEFLAGS": f"-j{os.cpu_count() or 1}"}
        env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
        _run_logged(
            _pip(python, "install", "--no-build-isolation", "--no-cache-dir", str(source)),
            log,
            deadline,
            progress,
            env=env,
        )


def check_versions(
    python: Path, checks: tuple[tuple[str, str], ...], timeout: float = 300.0
) -> dict[str, str]:
    """Import each module in the env and read its distribution's version."""
    script = _VERSION_SCRIPT.format(pairs=list(checks))
    proc = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"import check failed in {python.parent.parent}: {tail}")
    pairs = (line.split("==", 1) for line in proc.stdout.splitlines() if "==" in line)
    return {dist: version for dist, version in pairs}


def install_env(
    name: str,
    timeout: float = DEFAULT_INSTALL_TIMEOUT,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Create (or re-create) the venv ``name``; returns its marker record.

    Raises ``UserError`` for an unknown name, a failed or timed-out step (with the log's
    last line), or a failed import check.
    """
    spec = get_spec(name)
    report = progress or (lambda line: None)
    target = env_dir(name)
    if is_installed(name) and not force:
        report(f"{name} already installed at {target} (use --force to rebuild)")
        marker = read_marker(name)
        assert marker is not None
        return marker
    if target.exists():
        shutil.rmtree(target)  # an unfinished or forced re-install starts clean
    target.mkdir(parents=True)
    log = target / "install.log"
    deadline = _Deadline(timeout)
    started = time.monotonic()
    report(f"creating venv {target}")
    venv_cmd = [sys.executable, "-m", "venv", str(target)]
    if spec.system_site_packages:
        venv_cmd.insert(3, "--system-site-packages")
    _run_logged(venv_cmd, log, deadline, report)
    python = env_python(name)
    report(f"installing {' '.join(spec.packages)}")
    _run_logged(
        _pip(python, "install", "--progress-bar", "off", *spec.packages), log, deadline, report
    )
    for requirement in spec.patched_sdists:
        _install_patched(python, requirement, spec, log, deadline, report)
    report("checking imports")
    versions = check_versions(python, spec.checks, timeout=max(30.0, deadline.left()))
    marker = {
        "name": name,
        "versions": versions,
        "python": str(python),
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "install_seconds": round(time.monotonic() - started, 1),
        "packages": list(spec.packages) + list(spec.patched_sdists),
    }
    (target / MARKER).write_text(json.dumps(marker, indent=1))
    return marker
