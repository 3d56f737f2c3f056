"""The torchrun launcher: one run's local ranks, started the way a cluster starts them.

``torch.distributed.run`` starts ``nproc_per_node`` workers with the torchrun environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), and when one
worker fails it tears the others down. ``processes.py`` adds what torchrun lacks for
benchmarking (a deadline, a sweep of the whole process tree, progress from the ranks'
record files); this module adds the one-line cause of failure from torchrun's summary.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from distbench.config import RunConfig
from distbench.harness.processes import (
    LaunchOutcome,
    describe_exit,
    earliest_recorded_error,
    free_port,
    rank0_progress,
    spawn,
    timed_out,
    watch,
    worker_environment,
    write_run_config,
)
from distbench.harness.stacks import dump_rank_stacks, where_ranks_wait
from distbench.harness.supervisor import lost_rank_marks
from distbench.measurement.records import read_run_records
from distbench.registry import processes, resolved_threads, strategy_facts

DEFAULT_CLUSTER_PORT = 29500  # torchrun's default master port


def torchrun_command(cfg: RunConfig, run_dir: Path, port: int) -> list[str]:
    nproc = processes(cfg) // cfg.nnodes
    return [
        sys.executable,
        "-m",
        # torchrun's own main, its store bound to --master-addr (harness/torchrun_bound.py)
        "distbench.harness.torchrun_bound",
        f"--nnodes={cfg.nnodes}",
        f"--node-rank={cfg.node_rank}",
        f"--nproc-per-node={nproc}",
        f"--master-addr={cfg.master_addr}",
        f"--master-port={port}",
        # the static rendezvous waits this long for every node's launcher to connect
        f"--rdzv-conf=timeout={max(1, round(cfg.rendezvous_timeout))}",
        "--max-restarts=0",
        "--monitor-interval=0.2",
        f"--log-dir={run_dir / 'logs'}",
        "--redirects=3",
        "-m",
        worker_program(cfg),
        str(run_dir),
    ]


def local_only(env: dict[str, str]) -> dict[str, str]:
    """gloo listens on the address of its interface, by default the one the host name
    resolves to (often a LAN address); a run on one machine pins it to loopback, unless
    the user chose an interface."""
    return {**env, "GLOO_SOCKET_IFNAME": env.get("GLOO_SOCKET_IFNAME", "lo")}


def worker_program(cfg: RunConfig) -> str:
    """The module torchrun starts on every rank. A strategy that survives a lost worker
    (the contract's ``survives_worker_loss``: ps-async with a central server) gets the
    rank supervisor, which outlives a killed worker so that torchrun does not stop the
    other ranks."""
    if strategy_facts(cfg.framework, cfg.strategy).survives_worker_loss(cfg):
        return "distbench.harness.supervisor"
    return "distbench.harness.worker"


def lost_ranks(run_dir: Path) -> dict[int, str]:
    """The ranks the rank supervisor saw killed from outside (its ``extra.lost`` summary)."""
    lost: dict[int, str] = {}
    for rank, records in sorted(read_run_records(run_dir).items()):
        why = ((records.summary or {}).get("extra") or {}).get("lost")
        if why:
            lost[rank] = str(why)
    return lost


def warn_lost_ranks(run_dir: Path) -> None:
    """A run that went on without a lost rank succeeds, with a warning naming the rank."""
    for rank, why in lost_ranks(run_dir).items():
        sys.stderr.write(f"warning: rank {rank} was lost ({why}); the run completed without it\n")


def launch_torchrun(
    cfg: RunConfig, run_dir: Path, on_progress: Callable[[int], None] | None = None
) -> LaunchOutcome:
    """Run all local ranks of ``cfg`` to completion, failure or timeout."""
    threads = resolved_threads(cfg)
    write_run_config(run_dir, cfg.replace(threads=threads).to_dict())
    # one node: any free port; several: torchrun's default, which every node can know
    port = cfg.master_port or (DEFAULT_CLUSTER_PORT if cfg.nnodes > 1 else free_port())
    started = time.monotonic()
    proc = spawn(
        torchrun_command(cfg, run_dir, port),
        local_only(worker_environment(threads)) if cfg.nnodes == 1 else worker_environment(threads),
        log=run_dir / "launcher.log",
    )
    polls: list[Callable[[], None] | None] = [rank0_progress(run_dir, on_progress)]
    if cfg.nnodes > 1:
        polls.append(RendezvousNotice(cfg, port, run_dir))
    ask_for_stacks = partial(dump_rank_stacks, [proc])
    if strategy_facts(cfg.framework, cfg.strategy).survives_worker_loss(cfg):
        polls.append(StallAfterLoss(run_dir, ask_for_stacks))
    try:
        seen = watch(
            [proc],
            cfg.timeout,
            on_poll=_all(polls),
            started=started,
            on_timeout=ask_for_stacks,
        )
    except RunStalled as stalled:
        return LaunchOutcome(-1, str(stalled), time.monotonic() - started)
    elapsed = time.monotonic() - started
    if seen.timed_out:
        return timed_out(cfg.timeout, elapsed, where=where_ranks_wait(run_dir))
    code = int(proc.returncode or 0)
    if code == 0:
        warn_lost_ranks(run_dir)
        return LaunchOutcome(0, None, elapsed)
    if cfg.nnodes > 1 and not started_ranks(run_dir):
        return LaunchOutcome(code, rendezvous_failure(cfg, port), elapsed)
    return LaunchOutcome(code, diagnose_failure(run_dir), elapsed)


class RunStalled(RuntimeError):
    """The run stopped making progress; the message says where its ranks were."""


class StallAfterLoss:
    """A poll hook for runs that go on without a lost worker: once a rank was lost, the
    others must keep recording. When no rank has recorded anything for ``max(MIN_SECONDS,
    GAP_FACTOR × the longest silence before the loss)``, the ranks are asked for their
    stacks (``dump``) and :class:`RunStalled` names where each one waits — instead of the
    run sitting until its deadline."""

    MIN_SECONDS = 120.0
    GAP_FACTOR = 3.0
    CHECK_SECONDS = 1.0

    def __init__(
        self,
        run_dir: Path,
        dump: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_dir, self.dump, self.clock = run_dir, dump, clock
        self.size = -1
        self.last_growth = self.next_check = clock()
        self.longest_silence = 0.0
        self.lost: list[int] = []

    def recorded_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.run_dir.glob("rank*.jsonl"))

    def limit(self) -> float:
        return max(self.MIN_SECONDS, self.GAP_FACTOR * self.longest_silence)

    def __call__(self) -> None:
        now = self.clock()
        if now < self.next_check:
            return
        self.next_check = now + self.CHECK_SECONDS
        size = self.recorded_bytes()
        if size != self.size:
            if not self.lost:
                self.longest_silence = max(self.longest_silence, now - self.last_growth)
            self.size, self.last_growth = size, now
        if not self.lost:
            self.lost = lost_rank_marks(self.run_dir)
            return
        silent = now - self.last_growth
        if silent > self.limit():
            self.dump()
            where = where_ranks_wait(self.run_dir) or "no rank reported its stack"
            raise RunStalled(
                f"stalled after rank {self.lost[0]} was lost: no rank recorded anything for "
                f"{silent:.0f} s; {where}"
            )


def _all(hooks: list[Callable[[], None] | None]) -> Callable[[], None]:
    active = [hook for hook in hooks if hook is not None]

    def poll() -> None:
        for hook in active:
            hook()

    return poll


def started_ranks(run_dir: Path) -> bool:
    """Whether any local rank has started (torchrun starts none before the rendezvous)."""
    return any(run_dir.glob("rank*.jsonl"))


def waiting_for(cfg: RunConfig, port: int) -> str:
    """Who a node waits for in the static rendezvous at node 0's address."""
    where = f"{cfg.master_addr}:{port}"
    if cfg.node_rank == 0:
        others = "node 1" if cfg.nnodes == 2 else f"nodes 1..{cfg.nnodes - 1}"
        return f"node 0 of {cfg.nnodes} is waiting for {others} to join at {where}"
    return (
        f"node {cfg.node_rank} of {cfg.nnodes} is waiting to join node 0 (and the others) "
        f"at {where}"
    )


def rendezvous_failure(cfg: RunConfig, port: int) -> str:
    return (
        f"rendezvous failed: {waiting_for(cfg, port)}, and not every node joined within "
        f"--rendezvous-timeout {cfg.rendezvous_timeout:g} s; start the same command with "
        f"--node-rank 0..{cfg.nnodes - 1} on each node"
    )


class RendezvousNotice:
    """Says, on stderr, that a multi-node run is waiting for its other nodes: after
    ``FIRST`` seconds without a started rank, then every ``EVERY`` seconds."""

    FIRST = 10.0
    EVERY = 30.0

    def __init__(self, cfg: RunConfig, port: int, run_dir: Path) -> None:
        self.cfg, self.port, self.run_dir = cfg, port, run_dir
        self.since = time.monotonic()
        self.since_wall = time.strftime("%H:%M:%S")
        self.next_notice = self.since + self.FIRST
        self.done = False

    def __call__(self) -> None:
        now = time.monotonic()
        if self.done or now < self.next_notice:
            return
        if started_ranks(self.run_dir):
            self.done = True
            return
        self.next_notice = now + self.EVERY
        sys.stderr.write(
            f"{waiting_for(self.cfg, self.port)} since {self.since_wall} "
            f"({now - self.since:.0f} s; gives up after {self.cfg.rendezvous_timeout:g} s)\n"
        )


# torchrun's failure summary lists each failed rank with its exit code (negative: signal).
_FAILED_RANK = re.compile(r"rank\s*:\s*(\d+)[^\n]*\n\s*exitcode\s*:\s*(-?\d+)")


def signal_rank(code: int) -> int:
    """How likely a rank's signal is the cause of the failure (0 most). SIGTERM is how
    torchrun stops the survivors; SIGABRT is how a gloo rank ends when a peer's connection
    drops; any other signal (SIGKILL, SIGSEGV, ...) came from outside or from a crash."""
    if code == -signal.SIGTERM:
        return 2
    return 1 if code == -signal.SIGABRT else 0


def diagnose_failure(run_dir: Path) -> str:
    """One line saying which rank failed and why.

    A rank the supervisor saw killed is the cause of a run that then could not go on (a
    lost parameter server: its supervisor exits 0, so torchrun's summary names only the
    workers it stopped afterwards). Otherwise a rank killed by a signal is the cause (the
    others then fail with connection errors); otherwise the earliest exception a rank
    recorded; otherwise torchrun's own summary.
    """
    lost = lost_ranks(run_dir)
    if lost:
        rank, why = next(iter(lost.items()))
        return f"rank {rank} died: {why}; the run could not go on without it"
    log = (run_dir / "launcher.log").read_text(errors="replace")
    failures = [(int(rank), int(code)) for rank, code in _FAILED_RANK.findall(log)]
    killed = sorted((signal_rank(code), rank, code) for rank, code in failures if code < 0)
    if killed:
        _, rank, code = killed[0]
        return f"rank {rank} died: {describe_exit(code)}"
    recorded = earliest_recorded_error(run_dir)
    if recorded:
        return recorded
    if failures:
        rank, code = failures[0]
        return f"rank {rank} died: {describe_exit(code)}"
    tail = [line for line in log.splitlines() if line.strip()][-1:] or ["no output"]
    return f"launcher failed: {tail[0].strip()[:300]}"
