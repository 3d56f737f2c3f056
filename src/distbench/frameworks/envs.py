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
    #: See the packages of the Python distbench runs in (Horovod builds against the torch
    #: installed there, instead of downloading a second, multi-GB torch): ``base_paths``.
    shares_torch: bool = False
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
        shares_torch=True,
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
    # a dangling link still counts: env_problem then says its interpreter is gone
    if not path.is_file() or not os.path.lexists(env_python(name)):
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data


def is_installed(name: str) -> bool:
    """Finished and still usable (see :func:`env_problem`)."""
    marker = read_marker(name)
    return marker is not None and env_problem(name, marker) is None


def require_env(name: str) -> Path:
    """The env's python, or a UserError saying how to install it (or why to rebuild it)."""
    marker = read_marker(name)
    if marker is None:
        raise UserError(
            f"the {name} environment is not installed; run "
            f"`distbench env install {name}` (it goes to {env_dir(name)})"
        )
    problem = env_problem(name, marker)
    if problem is not None:
        raise UserError(
            f"the {name} environment is unusable: {problem}; rebuild it with "
            f"`distbench env install {name} --force`"
        )
    return env_python(name)


# ------------------------------------------------------------------------------ the shared torch

#: In an env that shares torch, this file in its site-packages lists ``base_paths``.
BASE_PTH = "distbench-base.pth"


def torch_location() -> tuple[str, str]:
    """(version, the directory that holds the ``torch`` package) of this interpreter."""
    import importlib.metadata
    import importlib.util

    found = importlib.util.find_spec("torch")
    if found is None or found.origin is None:
        raise UserError("torch is not importable here; install distbench (it pins torch)")
    return importlib.metadata.version("torch"), str(Path(found.origin).parent.parent)


def base_paths() -> list[str]:
    """Where the Python distbench runs in finds its packages: torch's directory first,
    then distbench's, then its site directories (a venv's, a conda env's, the system's, the
    user site), so an env that lists them imports *this* torch and this distbench — whether
    distbench was installed into a venv, the user site, the system or conda.
    (``venv --system-site-packages`` would expose the base interpreter's packages instead
    of a venv's, and build against whatever torch is there.)
    """
    import site

    import distbench

    # distbench's own parent too: an editable install is found through a finder that a
    # listed directory's .pth files would set up, and those are not read from here
    own = str(Path(distbench.__file__).resolve().parent.parent)
    paths = [torch_location()[1], own, *site.getsitepackages()]
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        paths.append(site.getusersitepackages())
    return list(dict.fromkeys(str(Path(p).resolve()) for p in paths))


def base_record() -> dict[str, Any]:
    """What an env that shares torch was built from, kept in its marker."""
    version, location = torch_location()
    return {
        "python": sys.executable,
        "torch": version,
        "torch_dir": str(Path(location).resolve()),
        "paths": base_paths(),
    }


def env_problem(name: str, marker: dict[str, Any]) -> str | None:
    """Why a finished env can no longer be used, or None: its interpreter is gone, it was
    moved, or (sharing torch) the install it was built from moved or changed torch."""
    python = env_python(name)
    if not python.exists():  # a dangling link: the interpreter it was made from is gone
        return f"its interpreter {os.path.realpath(python)} is gone"
    built_at = marker.get("python")
    if built_at and Path(built_at).parent.parent.resolve() != env_dir(name).resolve():
        return f"it was built at {Path(built_at).parent.parent} and moved since"
    base = marker.get("base")
    if not get_spec(name).shares_torch or not isinstance(base, dict):
        return None
    missing = [path for path in base.get("paths", []) if not Path(path).is_dir()]
    if missing:
        return f"the distbench install it was built from is gone ({missing[0]} is missing)"
    version, location = torch_location()
    if version != base.get("torch"):
        return f"torch changed from {base.get('torch')} to {version} since it was built"
    if str(Path(location).resolve()) != base.get("torch_dir"):
        return (
            f"it was built against the torch in {base.get('torch_dir')}, but distbench now "
            f"runs with the torch in {location}"
        )
    return None


def check_shared_torch(python: Path) -> None:
    """The env must import the very torch distbench runs with, not another one."""
    done = subprocess.run(
        [str(python), "-c", "import torch; print(torch.__file__)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = Path(done.stdout.strip()).parent.parent.resolve() if done.returncode == 0 else None
    wanted = Path(torch_location()[1]).resolve()
    if found != wanted:
        raise UserError(
            f"the environment at {python.parent.parent} imports torch from "
            f"{found or 'nowhere'}, not distbench's ({wanted})"
        )


def share_torch(python: Path) -> None:
    """Make the env at ``python`` import this interpreter's packages after its own."""
    done = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    site_dir = Path(done.stdout.strip())
    (site_dir / BASE_PTH).write_text("".join(f"{path}\n" for path in base_paths()))


@dataclass
class EnvStatus:
    """One row of ``distbench env list``; ``problem``: why an installed env is unusable."""

    name: str
    installed: bool
    path: str
    versions: dict[str, str]
    installed_at: str | None
    description: str
    problem: str | None = None


def list_envs() -> list[EnvStatus]:
    rows = []
    for name, spec in ENV_SPECS.items():
        marker = read_marker(name)
        problem = env_problem(name, marker) if marker is not None else None
        rows.append(
            EnvStatus(
                name,
                marker is not None and problem is None,
                str(env_dir(name)),
                dict((marker or {}).get("versions", {})),
                (marker or {}).get("installed_at"),
                spec.description,
                problem,
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
            f"{_last_line(log, error=True)}{_index_hint(log)}; full log: {log}"
        )


#: What pip prints when it cannot reach the package index (or the index has nothing).
_UNREACHABLE = ("(from versions: none)", "NewConnectionError", "Failed to establish a new")


def _index_hint(log: Path) -> str:
    text = log.read_text(errors="replace")
    if any(sign in text for sign in _UNREACHABLE):
        return " (pip found no release at all: is the package index reachable from here?)"
    return ""


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


def prepare_target(target: Path) -> None:
    """An empty directory for the env (an unfinished or forced re-install starts clean), or
    a UserError when the environments' directory cannot be written."""
    try:
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        (target / "install.log").touch()
    except OSError as exc:
        raise UserError(
            f"cannot write the environment directory {target} ({exc.strerror or exc}); "
            "set DISTBENCH_ENVS to a writable directory"
        ) from None


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
    existing = read_marker(name)
    if existing is not None and not force:
        problem = env_problem(name, existing)
        if problem is None:
            report(f"{name} already installed at {target} (use --force to rebuild)")
            return existing
        report(f"rebuilding {name}: {problem}")
    prepare_target(target)
    log = target / "install.log"
    deadline = _Deadline(timeout)
    started = time.monotonic()
    report(f"creating venv {target}")
    _run_logged([sys.executable, "-m", "venv", str(target)], log, deadline, report)
    python = env_python(name)
    if spec.shares_torch:
        share_torch(python)
    report(f"installing {' '.join(spec.packages)}")
    _run_logged(
        _pip(python, "install", "--progress-bar", "off", *spec.packages), log, deadline, report
    )
    for requirement in spec.patched_sdists:
        _install_patched(python, requirement, spec, log, deadline, report)
    report("checking imports")
    versions = check_versions(python, spec.checks, timeout=max(30.0, deadline.left()))
    if spec.shares_torch:
        check_shared_torch(python)
    marker = {
        "name": name,
        "versions": versions,
        "python": str(python),
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "install_seconds": round(time.monotonic() - started, 1),
        "packages": list(spec.packages) + list(spec.patched_sdists),
        **({"base": base_record()} if spec.shares_torch else {}),
    }
    (target / MARKER).write_text(json.dumps(marker, indent=1))
    return marker
