"""Whether a run's processes fit in this machine's memory, checked before anything starts.

A process of a run holds the Python and torch runtime (``RUNTIME_BYTES``: its private
memory, measured; the libraries' code is shared between processes and not counted) and
about ``STATE_COPIES`` copies of the model's state: weights, gradients, DDP's buckets or a
parameter server's flat pull and push buffers. Activations come on top for real compute;
emulated compute has none. A run whose estimate exceeds ``USABLE_SHARE`` of the memory
available now is refused with one line that says the numbers (docs/emulation.md has the
measurements these constants come from).
"""

from __future__ import annotations

from collections.abc import Callable

import psutil

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.registry import processes

MIB = 1024 * 1024
#: Private memory of one idle rank: interpreter, torch, gloo, the monitor (measured).
RUNTIME_BYTES = 180 * MIB
#: Copies of the model state one process holds (weights, gradients, two buffers).
STATE_COPIES = 4
#: Share of the available memory a run may plan to use.
USABLE_SHARE = 0.85


def estimated_bytes(state_bytes: int) -> int:
    """Memory one process of a run needs for a model of ``state_bytes``."""
    return RUNTIME_BYTES + STATE_COPIES * state_bytes


def check_memory(
    configs: list[RunConfig],
    state_bytes: Callable[[RunConfig], int],
    available: int | None = None,
) -> None:
    """UserError naming the first config whose processes would not fit."""
    free = psutil.virtual_memory().available if available is None else available
    for cfg in configs:
        count = processes(cfg) // cfg.nnodes
        each = estimated_bytes(state_bytes(cfg))
        if count * each > USABLE_SHARE * free:
            raise UserError(
                f"{cfg.model} {cfg.strategy} with --workers {cfg.workers} needs about "
                f"{count * each / 1024**3:.1f} GiB ({count} processes of ~{each / MIB:.0f} MiB: "
                f"{RUNTIME_BYTES / MIB:.0f} MiB runtime + {STATE_COPIES} x "
                f"{state_bytes(cfg) / MIB:.0f} MiB of model state); "
                f"{free / 1024**3:.1f} GiB is available here: use fewer --workers"
            )
