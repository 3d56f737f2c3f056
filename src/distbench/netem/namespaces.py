"""Emulated hosts on one machine: network namespaces, veth pairs, a bridge, ``tc`` shaping.

Start at :func:`emulated_network`, a context manager that yields a :class:`Network` of ``K``
hosts and always takes it down again. Layout of one network (tag ``T``, 6 hex digits)::

    namespace dbn-T-br : bridge "dbn-br" + one port "dbn-v<k>" per host (tc: host k's "down")
    namespace dbn-T-h<k> : "lo" + "dbn0" = the veth peer of dbn-v<k>, address 10.213.0.<k+1>
                           (tc on dbn0: host k's "up")

Nothing is created in the root namespace, so deleting the namespaces removes every link and
qdisc, and the hosts can reach nothing but each other. Crash safety: before creating anything
a run writes ``STATE_DIR/T.json`` (owner pid + start time); at every start,
:func:`cleanup_stale` kills the processes left in, and deletes, every ``dbn-*`` namespace
whose owner is gone (a run killed with SIGKILL). Creation and cleanup hold one ``flock``, so
concurrent runs never take each other's namespaces for leftovers.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from distbench.errors import UserError
from distbench.netem.spec import NetworkSpec

PREFIX = "dbn-"
HOST_IFNAME = "dbn0"
BRIDGE = "dbn-br"
DEFAULT_SUBNET = "10.213.0.0/24"
NETNS_DIR = Path("/run/netns")
STATE_DIR = Path(os.environ.get("DISTBENCH_NETEM_STATE", "/run/distbench/netem"))
TBF_LATENCY = "50ms"  # tbf queue: 50 ms of traffic at the link rate
# htb's deficit per round for each peer of a fair-queued link: one 64 KiB GSO segment, so
# a round moves whole segments and no peer's share depends on its packet sizes
QUANTUM = 65536
# A peer's class holds one full-size frame of tokens; the link's burst is its parent's.
# htb lets a class that sends within its own rate skip its parent's bucket, so a bucket
# per peer would let k peers that start together burst k buckets beyond the link's rate
# (measured: 7 hosts sending 250 kB each into one 100 Mbit/s link after idle moved 1.38
# of its rate). A larger packet (a 64 KiB GSO segment) puts the class in debt and it
# waits, so its rate stays exact.
PEER_BURST = 1600
# ...and that segment is lent on credit: each peer's class that starts sending after idle
# passes one segment at once. A fair-queued host therefore makes segments of at most 1 ms
# of traffic at its rate (64 KiB, the kernel's own bound, from 524 Mbit/s up): at
# 100 Mbit/s, 12.5 kB, so k peers that start together no longer pass k x 64 KiB at once
# (measured: 3 hosts' 250 kB into one host moved 1.23 of the rate, and 1.05 with it).
GSO_SECONDS = 0.001
MAX_GSO_BYTES = 65536
# TCP small queues inside every emulated host (a per-namespace sysctl): at most 64 KiB of a
# socket's data waits below it. On a real host the bottleneck queue is the NIC's ring, kept
# to a few packets by BQL; here it is the tbf FIFO, and with the machine's default (4 MiB
# here) each flow parks 10-20 ms of data there, which delays the ACKs and the next chunk of
# a ring all-reduce behind it. Measured on a 64 MiB gloo all-reduce at 100mbit (2 hosts):
# 88.6-91.6 % of the rate with the default, 93.2-94.5 % with 64 KiB; 1gbit: 95.5 % both.
HOST_SYSCTLS = {"net.ipv4.tcp_limit_output_bytes": "65536"}
COMMAND_TIMEOUT = 30.0


@dataclass(frozen=True)
class Host:
    """One emulated host: a namespace with one interface and one address."""

    index: int
    namespace: str
    address: str
    ifname: str = HOST_IFNAME

    def exec_prefix(self) -> list[str]:
        """Prepend to a command to run it on this host (``ip netns exec`` keeps cwd and env)."""
        return ["ip", "netns", "exec", self.namespace]


@dataclass
class Network:
    """A set of hosts joined by a bridge, each link shaped by ``spec`` (None: unshaped)."""

    tag: str
    spec: NetworkSpec | None
    hosts: list[Host] = field(default_factory=list)

    @property
    def bridge_namespace(self) -> str:
        return f"{PREFIX}{self.tag}-br"

    def namespaces(self) -> list[str]:
        return [h.namespace for h in self.hosts] + [self.bridge_namespace]


# -- running ip / tc -----------------------------------------------------------------------
def run_cmd(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one ``ip``/``tc`` command; a failure is a one-line ``UserError`` naming it."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"network setup: `{' '.join(argv)}` failed: {exc}") from exc
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise UserError(
            f"network setup: `{' '.join(argv)}` failed: "
            f"{detail[0] if detail else f'exit code {done.returncode}'}"
        )
    return done


def require_privileges() -> None:
    """Namespaces and qdiscs need root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2."""
    if os.geteuid() != 0:
        raise UserError(
            "--network/--hosts create network namespaces and tc qdiscs, which "
            "needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN): run as root, e.g. "
            "`sudo -E distbench run ...`"
        )
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        raise UserError(
            f"--network/--hosts need iproute2 ({', '.join(missing)} not found "
            "on PATH): install it, e.g. `apt-get install iproute2`"
        )


# -- addresses -------------------------------------------------------------------------------
def host_addresses(count: int, given: list[str] | None = None) -> tuple[list[str], int]:
    """Addresses for ``count`` hosts and the prefix length that puts them all on one link."""
    if not given:
        net = ipaddress.ip_network(DEFAULT_SUBNET)
        if count > net.num_addresses - 2:
            raise UserError(f"--hosts {count}: at most {net.num_addresses - 2} emulated hosts")
        return [str(net.network_address + 1 + k) for k in range(count)], net.prefixlen
    addresses = [ipaddress.ip_address(a) for a in given]
    prefix = 32
    while (
        prefix > 8
        and len({ipaddress.ip_network(f"{a}/{prefix}", strict=False) for a in addresses}) > 1
    ):
        prefix -= 1
    return [str(a) for a in addresses], min(prefix, 24)


def check_addresses(lines: list[str]) -> list[str]:
    """Validate node-file addresses for emulated hosts: unique IPv4, one /8 at most apart."""
    seen: list[str] = []
    for line in lines:
        try:
            address = ipaddress.ip_address(line)
        except ValueError:
            raise UserError(
                f"node file: '{line}' is not an IPv4 address (emulated hosts "
                "need literal addresses)"
            ) from None
        if address.version != 4 or address.is_loopback or address.is_multicast:
            raise UserError(f"node file: '{line}' cannot be an emulated host's address")
        if line in seen:
            raise UserError(f"node file: '{line}' appears twice")
        seen.append(line)
    _, prefix = host_addresses(len(seen), seen)
    if prefix <= 8:
        raise UserError("node file: the addresses must share at least their first octet")
    return seen


# -- crash-safe state ------------------------------------------------------------------------
@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    """Serialise creation and cleanup across distbench processes on this machine."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with (STATE_DIR / "lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _state_file(tag: str) -> Path:
    return STATE_DIR / f"{tag}.json"


def write_state(tag: str) -> None:
    me = psutil.Process()
    _state_file(tag).write_text(
        json.dumps({"tag": tag, "pid": me.pid, "create_time": me.create_time()})
    )


def owner_alive(state: dict[str, Any]) -> bool:
    """True while the process that created a network still runs (pid reuse is checked)."""
    try:
        proc = psutil.Process(int(state["pid"]))
        return abs(proc.create_time() - float(state["create_time"])) < 0.5
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def our_namespaces() -> list[str]:
    """Every ``dbn-*`` namespace on this machine (``ip netns list`` reads this directory)."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(PREFIX))
    except OSError:
        return []


def tag_of(namespace: str) -> str:
    return namespace.removeprefix(PREFIX).split("-", 1)[0]


def live_tags() -> set[str]:
    tags = set()
    for path in STATE_DIR.glob("*.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            state = {}
        if owner_alive(state):
            tags.add(path.stem)
    return tags


def cleanup_stale() -> list[str]:
    """Remove namespaces (with their links and qdiscs) and state of runs that are gone.

    Returns the namespaces removed. Cheap and silent when there is nothing of ours, so every
    ``distbench run`` calls it; without root it only reports (it cannot delete anything).
    """
    if not our_namespaces() and not any(STATE_DIR.glob("*.json")):
        return []
    if os.geteuid() != 0:
        return []
    with state_lock():
        alive = live_tags()
        stale = [ns for ns in our_namespaces() if tag_of(ns) not in alive]
        delete_namespaces(stale)
        for path in STATE_DIR.glob("*.json"):
            if path.stem not in alive:
                path.unlink(missing_ok=True)
    return stale


def delete_namespaces(namespaces: list[str]) -> None:
    """Kill what still runs inside, then delete; the veths and qdiscs go with them."""
    for namespace in namespaces:
        pids = run_cmd("ip", "netns", "pids", namespace, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(psutil.Error, ValueError):
                psutil.Process(int(pid)).wait(timeout=10)
        run_cmd("ip", "netns", "delete", namespace, check=False)


# -- building a network ----------------------------------------------------------------------
def tc_shape(
    namespace: str,
    dev: str,
    rate_bit_s: int | None,
    spec: NetworkSpec,
    peers: tuple[str, list[str]] | None = None,
) -> None:
    """Shape ``dev``'s egress: at ``rate_bit_s`` through one FIFO (tbf), or with
    ``queue=fair`` shared equally among ``peers`` (``("dst" | "src", addresses)``: which
    end of a packet names the peer); under netem when a delay is asked for.

    The delay is split over the two egresses a packet crosses (sender up, receiver down), so
    ``delay=`` is the one-way host-to-host latency.
    """
    tc = ["tc", "-n", namespace, "qdisc", "replace", "dev", dev]
    parent = ["root"]
    if spec.delay_s:
        run_cmd(*tc, "root", "handle", "1:", "netem", "delay", f"{spec.delay_s / 2 * 1e6:.0f}us")
        parent = ["parent", "1:1"]
    if rate_bit_s is None:
        return
    burst = spec.burst_for(rate_bit_s)
    if spec.queue == "fair" and peers is not None:
        match, addresses = peers
        lines = fair_queue_commands(dev, parent, rate_bit_s, burst, match, addresses)
        tc_batch(namespace, lines)
        return
    tbf = ["tbf", "rate", f"{rate_bit_s}bit", "burst", str(burst), "latency", TBF_LATENCY]
    run_cmd(*tc, *parent, "handle", "10:", *tbf)


def fair_segment_bytes(spec: NetworkSpec) -> int | None:
    """The largest GSO segment a host of a fair-queued network makes (``GSO_SECONDS`` of
    its slower direction's traffic, at least one frame, at most the kernel's 64 KiB);
    ``None``: not fair-queued, the kernel's default stands."""
    rate = spec.rate_bit_s
    if spec.queue != "fair" or rate is None:
        return None
    frame = spec.mtu or 1500
    return max(frame, min(MAX_GSO_BYTES, int(rate / 8 * GSO_SECONDS)))


def queue_limit_bytes(rate_bit_s: int) -> int:
    """A queue's depth: ``TBF_LATENCY`` of traffic at the link's rate (tbf's own bound)."""
    return int(rate_bit_s / 8 * float(TBF_LATENCY.removesuffix("ms")) / 1000)


def fair_queue_commands(
    dev: str, parent: list[str], rate_bit_s: int, burst: int, match: str, addresses: list[str]
) -> list[str]:
    """``tc -batch`` lines of a fair-queued link: an htb class at the link's rate with one
    child class per peer (``match``: ``dst`` on a host's egress, ``src`` on the bridge port
    that carries traffic into a host), each guaranteed an equal share and allowed the whole
    rate, so the peers that have traffic share the rate equally (htb's deficit round robin);
    everything else (ARP) goes to one more such class. Each child queues ``TBF_LATENCY`` of
    traffic, as the FIFO link does."""
    shares = len(addresses) + 1
    each = max(8, rate_bit_s // shares)
    rates = (
        f"rate {each}bit ceil {rate_bit_s}bit burst {PEER_BURST} cburst {PEER_BURST}"
        f" quantum {QUANTUM}"
    )
    default = shares + 1  # class minors are hex in tc; 1 is the link, peers from 2
    lines = [
        f"qdisc replace dev {dev} {' '.join(parent)} handle 10: htb default {default:x}",
        f"class add dev {dev} parent 10: classid 10:1 htb rate {rate_bit_s}bit "
        f"ceil {rate_bit_s}bit burst {burst} cburst {burst}",
    ]
    limit = queue_limit_bytes(rate_bit_s)
    for minor, address in enumerate([*addresses, None], start=2):
        lines += [
            f"class add dev {dev} parent 10:1 classid 10:{minor:x} htb {rates}",
            f"qdisc add dev {dev} parent 10:{minor:x} bfifo limit {limit}",
        ]
        if address is not None:
            lines.append(
                f"filter add dev {dev} parent 10: protocol ip prio 1 u32 "
                f"match ip {match} {address}/32 flowid 10:{minor:x}"
            )
    return lines


def tc_batch(namespace: str, lines: list[str]) -> None:
    """Run ``tc`` commands in one process (``tc -batch``): a fair-queued network of 33 hosts
    has a few thousand."""
    with tempfile.NamedTemporaryFile("w", suffix=".tc", delete=False) as batch:
        batch.write("\n".join(lines) + "\n")
    try:
        run_cmd("tc", "-n", namespace, "-batch", batch.name)
    finally:
        Path(batch.name).unlink(missing_ok=True)


def tune_host_tcp(namespace: str) -> None:
    """Apply ``HOST_SYSCTLS`` in a host's namespace; a kernel without them keeps its own."""
    if shutil.which("sysctl") is None:  # procps absent: the hosts keep the defaults
        return
    for key, value in HOST_SYSCTLS.items():
        setting = f"{key}={value}"
        run_cmd("ip", "netns", "exec", namespace, "sysctl", "-q", "-w", setting, check=False)


def add_host(
    net: Network, index: int, address: str, prefix: int, addresses: list[str] | None = None
) -> Host:
    """One host on the bridge, its link shaped in both directions; ``addresses``: every
    host's (a fair-queued link shares its rate among the others)."""
    host = Host(index, f"{PREFIX}{net.tag}-h{index}", address)
    net.hosts.append(host)
    port, br = f"dbn-v{index}", net.bridge_namespace
    run_cmd("ip", "netns", "add", host.namespace)
    run_cmd(
        "ip",
        "-n",
        br,
        "link",
        "add",
        port,
        "type",
        "veth",
        "peer",
        "name",
        HOST_IFNAME,
        "netns",
        host.namespace,
    )
    run_cmd("ip", "-n", br, "link", "set", port, "addrgenmode", "none", "master", BRIDGE, "up")
    run_cmd("ip", "-n", host.namespace, "link", "set", "lo", "up")
    tune_host_tcp(host.namespace)
    run_cmd("ip", "-n", host.namespace, "link", "set", HOST_IFNAME, "addrgenmode", "none")
    run_cmd("ip", "-n", host.namespace, "addr", "add", f"{address}/{prefix}", "dev", HOST_IFNAME)
    run_cmd("ip", "-n", host.namespace, "link", "set", HOST_IFNAME, "up")
    if net.spec is not None and net.spec.mtu:
        run_cmd("ip", "-n", br, "link", "set", port, "mtu", str(net.spec.mtu))
        run_cmd("ip", "-n", host.namespace, "link", "set", HOST_IFNAME, "mtu", str(net.spec.mtu))
    if net.spec is not None:
        segment = fair_segment_bytes(net.spec)
        if segment is not None and segment < MAX_GSO_BYTES:
            limit = ["gso_max_size", str(segment)]
            run_cmd("ip", "-n", host.namespace, "link", "set", HOST_IFNAME, *limit)
        peers = [a for a in addresses or [] if a != address]
        tc_shape(host.namespace, HOST_IFNAME, net.spec.up_bit_s, net.spec, ("dst", peers))
        tc_shape(br, port, net.spec.down_bit_s, net.spec, ("src", peers))
    return host


def create_network(
    spec: NetworkSpec | None, hosts: int, addresses: list[str] | None = None
) -> Network:
    """Build the namespaces; on any failure what was built is removed and the error raised."""
    net = Network(tag=secrets.token_hex(3), spec=spec)
    chosen, prefix = host_addresses(hosts, addresses)
    with state_lock():
        write_state(net.tag)
        try:
            run_cmd("ip", "netns", "add", net.bridge_namespace)
            run_cmd("ip", "-n", net.bridge_namespace, "link", "add", BRIDGE, "type", "bridge")
            run_cmd("ip", "-n", net.bridge_namespace, "link", "set", BRIDGE, "up")
            for index, address in enumerate(chosen):
                add_host(net, index, address, prefix, chosen)
        except BaseException:
            remove_network(net)
            raise
    return net


def remove_network(net: Network) -> None:
    """Delete everything of ``net`` (namespaces by name, so a half-built one goes too)."""
    mine = [ns for ns in our_namespaces() if tag_of(ns) == net.tag]
    delete_namespaces(sorted(mine, key=lambda ns: ns.endswith("-br")))  # bridge last
    _state_file(net.tag).unlink(missing_ok=True)


@contextlib.contextmanager
def own_namespace(suffix: str) -> Iterator[str]:
    """A namespace ``dbn-<tag>-<suffix>`` of this process's: recorded before it is made, so
    that :func:`cleanup_stale` removes it if we are SIGKILLed, and deleted on the way out."""
    tag = secrets.token_hex(3)
    namespace = f"{PREFIX}{tag}-{suffix}"
    with state_lock():
        write_state(tag)
        try:
            run_cmd("ip", "netns", "add", namespace)
        except BaseException:
            _state_file(tag).unlink(missing_ok=True)
            raise
    try:
        yield namespace
    finally:
        delete_namespaces([namespace])
        _state_file(tag).unlink(missing_ok=True)


def probe_netem() -> bool:
    """Whether this kernel has the ``netem`` qdisc: try it on ``lo`` in a scratch namespace."""
    with own_namespace("probe") as namespace:
        tc = ["tc", "-n", namespace, "qdisc", "add", "dev", "lo", "root"]
        return run_cmd(*tc, "netem", "delay", "1ms", check=False).returncode == 0


def check_spec_supported(spec: NetworkSpec | None) -> None:
    """Refuse, before anything starts, what this machine cannot emulate."""
    require_privileges()
    if spec is not None and spec.delay_s and not probe_netem():
        raise UserError(
            f"--network delay={spec.delay_s * 1e3:g}ms needs the kernel's netem "
            "qdisc (sch_netem), which this kernel lacks: drop delay= (bandwidth "
            "shaping uses tbf and works) or load sch_netem"
        )


# -- lifetime --------------------------------------------------------------------------------
def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP while a network is up unwind like Ctrl-C, so ``finally`` cleans up
    (the CLI installs the same; this covers library callers such as benchmarks/)."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def _unwind_on_termination() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        sig: signal.signal(sig, _raise_terminated) for sig in (signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def can_isolate() -> bool:
    """Whether this process may create network namespaces (root and iproute2)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


@contextlib.contextmanager
def loopback_only() -> Iterator[list[str] | None]:
    """A namespace with nothing but an up ``lo``, for the processes of one local run whose
    servers listen on every interface (TensorFlow's gRPC servers, horovodrun's rendezvous):
    inside it, every interface is loopback, so nothing listening there can be reached from
    another host. Yields the prefix that runs a command inside (``ip netns exec NS``), or
    None where namespaces cannot be made (not root); removed like an emulated network."""
    if not can_isolate():
        yield None
        return
    cleanup_stale()
    with _unwind_on_termination(), own_namespace("lo") as namespace:
        run_cmd("ip", "-n", namespace, "link", "set", "lo", "up")
        yield ["ip", "netns", "exec", namespace]


@contextlib.contextmanager
def emulated_network(
    spec: NetworkSpec | None, hosts: int, addresses: list[str] | None = None
) -> Iterator[Network]:
    """Create a network of ``hosts`` hosts, yield it, and always remove it again.

    Removal runs on normal exit, on exceptions, on Ctrl-C and on SIGTERM/SIGHUP; a SIGKILL
    leaves it behind for the next :func:`cleanup_stale` (which this function calls first).
    """
    require_privileges()
    cleanup_stale()
    with _unwind_on_termination():
        net = create_network(spec, hosts, addresses)
        try:
            yield net
        finally:
            remove_network(net)
