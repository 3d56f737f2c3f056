"""A run on one host is reachable from that host only.

While a real run goes on, every listening TCP socket of every process of the run is read
from ``/proc`` (``harness.sockets``) and each must be closed to other hosts: bound to
loopback, or inside a network namespace the run created — one holding only ``lo`` (any
address there is loopback), or an emulated host's namespace, on that host's own address.
One launch path per test: torchrun (local), emulated hosts (``--network``), and each
framework adapter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import ensure_framework_envs
from distbench.harness.sockets import ListeningSocket, network_namespace, tree_listening_sockets

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CLI = [sys.executable, "-m", "distbench.cli.main"]
HOST_NETNS = network_namespace(os.getpid())


def namespace_interfaces(pid: int) -> list[str]:
    rows = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    return [row.split(":", 1)[0].strip() for row in rows]


def reachable_from_outside(sock: ListeningSocket) -> str | None:
    """Why another host could reach ``sock``, or None when it cannot."""
    if sock.loopback:
        return None
    if sock.netns == HOST_NETNS:
        return f"{sock.name} (pid {sock.pid}) listens on {sock.address}:{sock.port}"
    try:
        interfaces = namespace_interfaces(sock.pid)
    except OSError:
        return None  # gone before it could be read: it was inside, not in this namespace
    if interfaces == ["lo"]:
        return None
    if sock.wildcard:
        return (
            f"{sock.name} (pid {sock.pid}) listens on every interface of a namespace "
            f"with {interfaces}"
        )
    return None


def watch_run(
    args: list[str], tmp_path: Path, on_sample: Callable[[], None] | None = None
) -> tuple[list[ListeningSocket], str]:
    """Run ``distbench run ARGS`` and sample its process tree's listening sockets (and call
    ``on_sample`` at every sample)."""
    proc = subprocess.Popen(
        [*CLI, "run", *args, "--db", str(tmp_path / "r.db")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: dict[tuple[int, str, int], ListeningSocket] = {}
    while proc.poll() is None:
        for sock in tree_listening_sockets(proc.pid):
            seen[(sock.pid, sock.address, sock.port)] = sock
        if on_sample is not None:
            on_sample()
        time.sleep(0.05)
    _, err = proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    return list(seen.values()), err


def assert_closed_to_other_hosts(sockets: list[ListeningSocket]) -> None:
    assert sockets, "no listening socket was seen: the sampling missed the run"
    open_ones = [why for why in map(reachable_from_outside, sockets) if why]
    assert not open_ones, open_ones


def test_local_torch_runs_listen_on_loopback_only(tmp_path: Path) -> None:
    run = "--model lenet5 --strategy ddp,ps-async --workers 2 --steps 60 --threads 1"
    sockets, _ = watch_run(run.split(), tmp_path)
    # torchrun's rendezvous store (the agent, named pt_elastic) is among them
    assert any(sock.name == "pt_elastic" for sock in sockets), sockets
    assert all(sock.netns == HOST_NETNS for sock in sockets)
    assert_closed_to_other_hosts(sockets)


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) is not installed"
    return None


def root_namespace_network() -> tuple[str, str]:
    """This namespace's links and qdiscs, without counters."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    qdiscs = subprocess.run(["tc", "qdisc", "show"], capture_output=True, text=True).stdout
    return links, qdiscs


@pytest.mark.skipif(_netns_unavailable() is not None, reason=_netns_unavailable() or "")
def test_emulated_hosts_listen_on_their_own_addresses(tmp_path: Path) -> None:
    """... and the run creates no link and no qdisc outside its own namespaces."""
    before = root_namespace_network()
    changed: list[tuple[str, str]] = []

    def same_root_network() -> None:
        now = root_namespace_network()
        if now != before:
            changed.append(now)

    run = "--model lenet5 --strategy ps-sync-join --workers 2 --steps 20 --threads 1"
    sockets, _ = watch_run(
        [*run.split(), "--network", "bandwidth=1gbit"], tmp_path, on_sample=same_root_network
    )
    assert all(sock.netns != HOST_NETNS for sock in sockets), sockets
    assert all(sock.address.startswith("10.213.") for sock in sockets), sockets
    assert_closed_to_other_hosts(sockets)
    assert not changed and root_namespace_network() == before, changed[:1]


ADAPTER_RUNS = {
    "tensorflow": "ps-async",  # a parameter server, a chief and workers: every gRPC server
    "mxnet": "ps-sync-join",  # scheduler, server, workers
    "horovod": "allreduce",  # horovodrun's rendezvous and the gloo ranks
}


@pytest.mark.skipif(_netns_unavailable() is not None, reason=_netns_unavailable() or "")
@pytest.mark.parametrize("framework", sorted(ADAPTER_RUNS))
def test_adapter_runs_listen_inside_a_loopback_only_namespace(
    framework: str, tmp_path: Path
) -> None:
    ensure_framework_envs((framework,), "several minutes")
    run = f"--framework {framework} --strategy {ADAPTER_RUNS[framework]} --model lenet5"
    sockets, err = watch_run([*run.split(), "--workers", "2", "--steps", "10"], tmp_path)
    assert "listen on every interface" not in err
    assert_closed_to_other_hosts(sockets)
