"""Run one benchmark as ``K`` hosts, launched the way a cluster launches it.

Start at :func:`launch_hosts` (the launcher ``harness.launchers`` picks when ``--network``
or ``--hosts`` is set). It builds an emulated network (``namespaces.emulated_network``) and
starts, in every host's namespace, the *same* torchrun command a user would type on node
``k`` of a real cluster: ``--nnodes K --node-rank k --master-addr <host 0> --master-port P``
with the worker program ``distbench.harness.worker``. So the multi-node path (static
rendezvous over TCP, gloo over a named interface, records gathered to global rank 0) is the
one exercised here.

Run directories: host 0 uses the run's own directory (rank 0 gathers every rank's records
there, as on a cluster); host ``k > 0`` uses ``RUN_DIR/host<k>`` (all namespaces share one
file system). After the run, files only a host ``k`` directory has (resource timelines, ...)
are copied up, never overwriting, so the merge is idempotent.

Node files (``--nodefile FILE``, one address per line, ``#`` comments): with ``--network``
or ``--hosts`` they name the emulated hosts' addresses; otherwise they describe a real
cluster and :func:`resolve_nodefile` sets ``nnodes``, ``master_addr`` (first line) and
``node_rank`` (the line holding one of this machine's addresses).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.harness.processes import (
    RUN_INPUT_FILES,
    LaunchOutcome,
    copy_run_inputs,
    rank0_progress,
    spawn,
    stop_all,
    timed_out,
    watch,
    worker_environment,
    write_run_config,
)
from distbench.harness.stacks import dump_rank_stacks, where_ranks_wait
from distbench.harness.torchrun import DEFAULT_CLUSTER_PORT, diagnose_failure, torchrun_command
from distbench.netem.namespaces import (
    HOST_SYSCTLS,
    Host,
    Network,
    check_addresses,
    emulated_network,
    host_addresses,
)
from distbench.netem.spec import NetworkSpec, parse_network
from distbench.registry import processes, resolved_threads

MASTER_PORT = 29400  # inside the namespaces every port is free
FAILURE_GRACE = 15.0  # after one host fails, the others get this long to notice, then stop
HOST_FILES_KEPT = ("config.json", "launcher.log", *RUN_INPUT_FILES)


@dataclass(frozen=True)
class HostPlan:
    """How a run is spread over emulated hosts."""

    spec: NetworkSpec | None
    hosts: int
    ranks_per_host: int
    addresses: list[str]  # from --nodefile, else the default subnet


def emulated(cfg: RunConfig) -> bool:
    """Whether ``cfg`` runs on emulated hosts (namespaces) rather than plain local ranks."""
    return bool(cfg.network or cfg.hosts)


# -- node files --------------------------------------------------------------------------------
def read_nodefile(path: str) -> list[str]:
    """Addresses, one per line (first word of each line; blank lines and # comments skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read --nodefile {path}: {exc}") from exc
    lines = [line.split("#", 1)[0].split() for line in text.splitlines()]
    nodes = [words[0] for words in lines if words]
    if not nodes:
        raise UserError(f"--nodefile {path} lists no addresses (one per line)")
    if len(set(nodes)) != len(nodes):
        raise UserError(f"--nodefile {path} lists an address twice")
    return nodes


def local_names() -> set[str]:
    """This machine's addresses and names, to find its own line in a node file."""
    names = {socket.gethostname(), socket.getfqdn()}
    for addrs in psutil.net_if_addrs().values():
        names.update(a.address for a in addrs if a.family == socket.AF_INET)
    return names


def resolve_nodefile(cfg: RunConfig) -> RunConfig:
    """Fill in what a node file implies; configs without one are returned unchanged."""
    if not cfg.nodefile:
        return cfg
    nodes = read_nodefile(cfg.nodefile)
    if emulated(cfg):
        check_addresses(nodes)
        if cfg.hosts is not None and cfg.hosts != len(nodes) and processes(cfg) > 1:
            raise UserError(
                f"--hosts {cfg.hosts} but --nodefile {cfg.nodefile} lists {len(nodes)} addresses"
            )
        return cfg.replace(hosts=len(nodes))
    mine = [k for k, node in enumerate(nodes) if node in local_names()]
    rank = cfg.node_rank if cfg.node_rank != 0 or not mine else mine[0]
    return cfg.replace(
        nnodes=len(nodes),
        master_addr=nodes[0],
        node_rank=rank,
        master_port=cfg.master_port or DEFAULT_CLUSTER_PORT,
    )


# -- plan and stored description ----------------------------------------------------------------
def host_plan(cfg: RunConfig) -> HostPlan:
    """Hosts = ``--hosts`` (a one-process run is always one host), else one per process."""
    count = processes(cfg)
    hosts = 1 if count == 1 else (cfg.hosts or count)
    given = read_nodefile(cfg.nodefile)[:hosts] if cfg.nodefile else None
    spec = parse_network(cfg.network) if cfg.network else None
    return HostPlan(spec, hosts, count // hosts, host_addresses(hosts, given)[0])


def network_info(cfg: RunConfig) -> dict[str, Any]:
    """The network a run used, stored with every result (``extra["network"]``)."""
    if not emulated(cfg):
        kind = "cluster" if cfg.nnodes > 1 else "loopback"
        return {
            "kind": kind,
            "spec": None,
            "rate": None,
            "hosts": cfg.nnodes,
            "ranks_per_host": processes(cfg) // cfg.nnodes,
        }
    plan = host_plan(cfg)
    shaped = plan.spec.as_dict() if plan.spec else {"spec": None}
    return {
        "kind": "emulated",
        **shaped,
        "rate": plan.spec.describe() if plan.spec else "unshaped",
        "hosts": plan.hosts,
        "ranks_per_host": plan.ranks_per_host,
        "addresses": plan.addresses,
        "host_sysctls": dict(HOST_SYSCTLS),
    }


# -- running programs on hosts -------------------------------------------------------------------
def host_environment(base: dict[str, str], host: Host) -> dict[str, str]:
    """Point gloo (and tensorpipe for torch.distributed.rpc, NCCL) at the host's interface."""
    env = dict(base)
    env.update(
        {
            "GLOO_SOCKET_IFNAME": host.ifname,
            "TP_SOCKET_IFNAME": host.ifname,
            "NCCL_SOCKET_IFNAME": host.ifname,
            "DISTBENCH_HOST": str(host.index),
        }
    )
    return env


def start_on_host(
    host: Host, argv: Sequence[str], env: dict[str, str], log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` inside ``host``'s namespace, in its own session (for kill_tree)."""
    return spawn(
        [*host.exec_prefix(), *argv], host_environment(env, host), log=log, tied_to_parent=False
    )


def wait_all(
    procs: Sequence[subprocess.Popen[bytes]],
    timeout: float,
    on_poll: Callable[[], None] | None = None,
) -> bool:
    """Wait for every process; True if the timeout stopped them.

    When one exits non-zero the others get ``FAILURE_GRACE`` seconds to fail on their own
    (so their logs say why), then are stopped. Any exception (Ctrl-C) stops them all.
    """
    return watch(
        procs,
        timeout,
        on_poll=on_poll,
        failure_grace=FAILURE_GRACE,
        on_timeout=lambda: dump_rank_stacks(procs),
    ).timed_out


def run_on_hosts(
    net: Network, argv_for: Callable[[Host], list[str]], env: dict[str, str], timeout: float
) -> list[tuple[int, str]]:
    """Run one program per host to completion; (exit code, output) per host.

    A plain building block for probes and micro-benchmarks (``probe.py``,
    ``benchmarks/network.py``): each program gets ``MASTER_ADDR`` = host 0 and its host's
    interface; ranks and the rest of the environment are up to ``argv_for``. Output goes to
    files (a pipe nobody reads could stall a chatty host); a timeout counts as exit code -1.
    """
    base = {**env, "MASTER_ADDR": net.hosts[0].address, "MASTER_PORT": str(MASTER_PORT)}
    with tempfile.TemporaryDirectory(prefix="distbench-hosts-") as scratch:
        logs = [Path(scratch) / f"host{host.index}.log" for host in net.hosts]
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for host, log in zip(net.hosts, logs, strict=True):
                procs.append(start_on_host(host, argv_for(host), base, log=log))
        except BaseException:
            stop_all(procs)
            raise
        timed_out = wait_all(procs, timeout)
        return [
            (
                -1 if timed_out else (p.returncode if p.returncode is not None else -1),
                log.read_text(errors="replace"),
            )
            for p, log in zip(procs, logs, strict=True)
        ]


# -- the benchmark run ---------------------------------------------------------------------------
def host_dir(run_dir: Path, index: int) -> Path:
    return run_dir if index == 0 else run_dir / f"host{index}"


def host_config(cfg: RunConfig, net: Network, index: int, threads: int) -> RunConfig:
    """What node ``index`` of a real cluster would be given: a plain multi-node config."""
    return cfg.replace(
        network=None,
        hosts=None,
        nodefile=None,
        nnodes=len(net.hosts),
        node_rank=index,
        master_addr=net.hosts[0].address,
        master_port=MASTER_PORT,
        threads=threads,
    )


def start_host(
    cfg: RunConfig, net: Network, index: int, run_dir: Path, threads: int
) -> subprocess.Popen[bytes]:
    directory = host_dir(run_dir, index)
    directory.mkdir(parents=True, exist_ok=True)
    node_cfg = host_config(cfg, net, index, threads)
    write_run_config(directory, node_cfg.to_dict())
    copy_run_inputs(run_dir, directory)
    command = torchrun_command(node_cfg, directory, MASTER_PORT)
    return start_on_host(
        net.hosts[index], command, worker_environment(threads), log=directory / "launcher.log"
    )


def merge_host_dirs(run_dir: Path, hosts: int) -> None:
    """Copy files only host k's directory has into the run directory (never overwrites)."""
    for index in range(1, hosts):
        for path in sorted(host_dir(run_dir, index).glob("*")):
            target = run_dir / path.name
            if path.is_file() and path.name not in HOST_FILES_KEPT and not target.exists():
                shutil.copy2(path, target)


def diagnose_hosts(run_dir: Path, codes: list[int | None]) -> str:
    """One line: a rank killed by a signal (not torchrun's SIGTERM) wins, else host order."""
    found = [
        (index, diagnose_failure(host_dir(run_dir, index)))
        for index, code in enumerate(codes)
        if code not in (0, None)
    ]
    if not found:
        return "a host's launcher failed without a record"
    found.sort(key=lambda item: ("killed by" not in item[1] or "SIGTERM" in item[1], item[0]))
    index, message = found[0]
    return f"host {index}: {message}"


def launch_hosts(
    cfg: RunConfig, run_dir: Path, on_progress: Callable[[int], None] | None = None
) -> LaunchOutcome:
    """Run ``cfg`` on emulated hosts: one torchrun launcher per host namespace."""
    plan = host_plan(cfg)
    threads = resolved_threads(cfg)  # every host shares this machine's cores
    (run_dir / "network.json").write_text(json.dumps(network_info(cfg)))
    started = time.monotonic()
    with emulated_network(plan.spec, plan.hosts, plan.addresses) as net:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for index in range(plan.hosts):
                procs.append(start_host(cfg, net, index, run_dir, threads))
        except BaseException:
            stop_all(procs)
            raise
        stopped = wait_all(procs, cfg.timeout, rank0_progress(run_dir, on_progress))
    elapsed = time.monotonic() - started
    merge_host_dirs(run_dir, plan.hosts)
    if stopped:
        return timed_out(cfg.timeout, elapsed, where=where_ranks_wait(run_dir))
    codes = [p.returncode for p in procs]
    code = next((c for c in codes if c), 0)
    return LaunchOutcome(code, None if code == 0 else diagnose_hosts(run_dir, codes), elapsed)


def preflight_network(configs: list[RunConfig]) -> None:
    """Before the first run: root and iproute2 for emulated runs, netem for ``delay=``."""
    from distbench.netem.namespaces import check_spec_supported

    checked: set[str | None] = set()
    for cfg in configs:
        if not emulated(cfg) or cfg.network in checked:
            continue
        checked.add(cfg.network)
        check_spec_supported(parse_network(cfg.network) if cfg.network else None)
