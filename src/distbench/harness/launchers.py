"""Which launcher a run gets, chosen in one place.

A ``Launcher`` starts every local process of one run, watches it under the run's deadline
(``processes.watch``) and returns a ``LaunchOutcome``. Three exist:

- ``torchrun``: the PyTorch strategies on this machine or one node of a real cluster
  (``harness.torchrun``);
- ``emulated-hosts``: one torchrun per emulated host, behind ``--network`` / ``--hosts``
  (``netem.multihost``);
- ``adapter``: another framework's own processes in its virtual environment
  (``frameworks.launch``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from distbench.config import RunConfig
from distbench.frameworks.launch import launch_adapter
from distbench.harness.processes import LaunchOutcome
from distbench.harness.torchrun import launch_torchrun
from distbench.netem.multihost import emulated, launch_hosts


class Launcher(Protocol):
    def __call__(
        self, cfg: RunConfig, run_dir: Path, on_progress: Callable[[int], None] | None = None
    ) -> LaunchOutcome: ...


LAUNCHERS: dict[str, Launcher] = {
    "torchrun": launch_torchrun,
    "emulated-hosts": launch_hosts,
    "adapter": launch_adapter,
}


def launcher_name(cfg: RunConfig) -> str:
    if cfg.framework != "torch":
        return "adapter"
    return "emulated-hosts" if emulated(cfg) else "torchrun"


def launch(
    cfg: RunConfig, run_dir: Path, on_progress: Callable[[int], None] | None = None
) -> LaunchOutcome:
    """Run all local processes of ``cfg`` to completion, failure or timeout."""
    return LAUNCHERS[launcher_name(cfg)](cfg, run_dir, on_progress)
