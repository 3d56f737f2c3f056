"""Whether a run's processes fit in this machine's memory, checked before anything starts.

A process of a run holds the Python and torch runtime (``RUNTIME_BYTES``: its private
memory, measured; the libraries' code is shared between processes and not counted) and
about ``STATE_COPIES`` copies of the model's state: weights, gradients, DDP's buckets or a
parameter server's flat pull and push buffers. A central parameter server holds one
receive buffer per worker besides (``STATE_COPIES + workers``), and an asynchronous one a
send snapshot per worker too (``STATE_COPIES + 2 workers``). Sharded servers live in the
workers: a unit holds a receive buffer (and, asynchronous, a snapshot) of its shard per
worker, ``1/N`` of the state each, so every worker holds one (two) copies more.
Activations come on top for
real compute; emulated compute has none. A run whose estimate exceeds ``USABLE_SHARE`` of the memory
available now is refused with one line that says the numbers (docs/emulation.md has the
measurements these constants come from).
"""

from __future__ import annotations

from collections.abc import Callable

import psutil

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.registry import processes, strategy_facts

MIB = 1024 * 1024
#: Private memory (USS) of one rank of a tiny model: interpreter, torch, gloo, the
#: monitor. Measured 222 MiB per lenet5 rank of an 8-rank emulated DDP run (torch 2.13).
RUNTIME_BYTES = 230 * MIB
#: Copies of the model state one process holds. Measured: a 16-rank emulated DDP run of
#: resnet18 (42.7 MiB of state) peaked at ~425 MiB private per rank, 4.7 copies.
STATE_COPIES = 5
#: Share of the available memory a run may plan to use.
USABLE_SHARE = 0.85


def estimated_bytes(state_bytes: int, copies: int = STATE_COPIES) -> int:
    """Memory one process of a run needs for a model of ``state_bytes``."""
    return RUNTIME_BYTES + copies * state_bytes


def server_copies(cfg: RunConfig) -> int:
    """State copies a central server holds per worker beyond its own: a receive buffer,
    and for asynchronous training a send snapshot."""
    per_worker = 1 if strategy_facts(cfg.framework, cfg.strategy).synchronous else 2
    return per_worker * cfg.workers


def worker_copies(cfg: RunConfig) -> int:
    """State copies a worker holds: ``STATE_COPIES``, and with sharded parameter servers
    its unit's buffers of one shard per worker (``server_copies / workers``)."""
    facts = strategy_facts(cfg.framework, cfg.strategy)
    if "servers" not in facts.settings or cfg.servers != "sharded":
        return STATE_COPIES
    return STATE_COPIES + (1 if facts.synchronous else 2)


def run_bytes(cfg: RunConfig, state: int) -> tuple[int, int]:
    """(this node's processes, the memory they need in all)."""
    count = processes(cfg) // cfg.nnodes
    servers = processes(cfg) - cfg.workers
    workers = count - servers if cfg.nnodes == 1 else count
    total = workers * estimated_bytes(state, worker_copies(cfg))
    if cfg.nnodes == 1:
        total += servers * estimated_bytes(state, STATE_COPIES + server_copies(cfg))
    return count, total


def check_memory(
    configs: list[RunConfig],
    state_bytes: Callable[[RunConfig], int],
    available: int | None = None,
) -> None:
    """UserError naming the first config whose processes would not fit."""
    free = psutil.virtual_memory().available if available is None else available
    for cfg in configs:
        state = state_bytes(cfg)
        count, total = run_bytes(cfg, state)
        if total > USABLE_SHARE * free:
            raise UserError(
                f"{cfg.model} {cfg.strategy} with --workers {cfg.workers} needs about "
                f"{total / 1024**3:.1f} GiB ({count} processes: {RUNTIME_BYTES / MIB:.0f} MiB "
                f"runtime each + {worker_copies(cfg)} x {state / MIB:.0f} MiB of model state, a "
                f"central server one or two more per worker); {free / 1024**3:.1f} GiB is "
                "available here: use fewer --workers"
            )
