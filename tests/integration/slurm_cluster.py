"""A real SLURM cluster on emulated hosts, for the ``--launcher slurm`` tests.

Debian's ``slurm-wlm`` and ``munge`` (installed when missing, as root), one ``munged``
with a key of its own, ``slurmctld`` in one network namespace and one ``slurmd`` per
compute node, each in its own namespace from ``netem`` (its own address on a bridge) and
its own UTS namespace (its own host name, which is how a ``slurmd`` knows which node it
is). Every file lives in one temporary directory and every daemon is stopped, and the
namespaces removed, when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from distbench.netem.namespaces import Host, emulated_network

DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "srun", "scontrol", "squeue", "scancel")
PACKAGES = ("slurm-wlm", "munge")
START_TIMEOUT = 90.0


def missing_daemons() -> list[str]:
    return [name for name in DAEMONS if shutil.which(name) is None]


def install_slurm() -> str | None:
    """Install SLURM and munge with apt when missing; the reason it cannot, else None."""
    if not missing_daemons():
        return None
    if os.geteuid() != 0:
        return (
            f"SLURM is not installed ({', '.join(missing_daemons())} missing) and this is not root"
        )
    if shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            return f"`{' '.join(step)}` failed: {done.stderr.strip()[-300:]}"
    return None if not missing_daemons() else f"still missing: {', '.join(missing_daemons())}"


@dataclass
class SlurmCluster:
    """The controller host (where jobs are submitted from) and the compute nodes."""

    root: Path
    controller: Host
    nodes: list[Host]
    env: dict[str, str]
    #: the running daemons by host name ("ctl", "node1", ...)
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def on_controller(self, argv: list[str]) -> list[str]:
        """``argv`` run on the controller's host, where the SLURM client commands reach it."""
        return [*self.controller.exec_prefix(), *argv]

    def client(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.on_controller(list(argv)),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def node_states(self) -> list[str]:
        return self.client("sinfo", "-h", "-N", "-o", "%T").stdout.split()

    def lose_node(self, index: int, wait: bool = True) -> None:
        """Node ``index`` (0-based) dies: SIGKILL to every process on its host — its slurmd,
        the job's step daemon and tasks — as when a machine loses power."""
        namespace = self.nodes[index].namespace
        listed = subprocess.run(
            ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=True
        )
        for pid in map(int, listed.stdout.split()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        daemon = self.daemons.pop(f"node{index + 1}", None)
        if daemon is not None and wait:
            daemon.wait(timeout=30)

    def settle(self) -> None:
        """Every node idle before the next job: a node a stopped job left drained (its
        tasks slow to die) is resumed; waits out nodes still completing a job."""
        listed = self.client("sinfo", "-h", "-N", "-o", "%N %T").stdout.split("\n")
        for line in filter(None, listed):
            name, state = line.split()[:2]
            if state.rstrip("*~#") in ("drained", "draining", "down"):
                self.client("scontrol", "update", f"NodeName={name}", "State=RESUME")
        wait_until_idle(self)

    def restart_node(self, index: int) -> None:
        """A new slurmd on node ``index``; waits until every node is idle again."""
        name = f"node{index + 1}"
        log = self.root / f"{name}.out"
        self.daemons[name] = start_daemon(self.nodes[index], name, ["slurmd", "-D"], self.env, log)
        self.client("scontrol", "update", f"NodeName={name}", "State=RESUME")
        wait_until_idle(self)


def slurm_conf(root: Path, controller: Host, nodes: list[Host], munge_socket: Path) -> str:
    """A minimal cluster: no accounting, no cgroups (processes tracked by their parents)."""
    node_lines = [
        f"NodeName=node{k + 1} NodeAddr={host.address} CPUs={os.cpu_count() or 1} State=UNKNOWN"
        for k, host in enumerate(nodes)
    ]
    names = ",".join(f"node{k + 1}" for k in range(len(nodes)))
    return "\n".join(
        [
            "ClusterName=distbench-test",
            f"SlurmctldHost=ctl({controller.address})",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={munge_socket}",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}/%n",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'slurmd-%n.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/linear",
            "MpiDefault=none",
            "ReturnToService=2",
            # every emulated node is this whole machine: take the node lines as given
            "SlurmdParameters=config_overrides",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            "KillWait=5",
            "MinJobAge=600",
            *node_lines,
            f"PartitionName=debug Nodes={names} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def start_munge(root: Path) -> Path:
    """A munged of this cluster's own: its key, its socket (not the system's)."""
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    socket = root / "munge.sock"
    subprocess.run(
        [
            "munged",
            "--force",
            f"--key-file={key}",
            f"--socket={socket}",
            f"--pid-file={root / 'munged.pid'}",
            f"--log-file={root / 'munged.log'}",
            f"--seed-file={root / 'munged.seed'}",
        ],
        check=True,
        timeout=30,
    )
    return socket


def stop_munge(root: Path) -> None:
    pid_file = root / "munged.pid"
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)


def start_daemon(
    host: Host, name: str, daemon: list[str], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """``daemon`` in the foreground on ``host`` under the host name ``name``."""
    script = f'hostname {name} && exec "$@"'
    # nsenter joins the host's network namespace only: `ip netns exec` would also remount
    # /sys, hiding the cgroup file system slurmd initializes its plugins from
    enter = ["nsenter", f"--net=/run/netns/{host.namespace}"]
    argv = [*enter, "unshare", "--uts", "sh", "-c", script, "sh", *daemon]
    with log.open("ab") as sink:
        return subprocess.Popen(
            argv, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_until_idle(cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        states = cluster.node_states()
        if len(states) == len(cluster.nodes) and all(s == "idle" for s in states):
            return
        for proc in cluster.daemons.values():
            if proc.poll() is not None:
                raise RuntimeError(f"a SLURM daemon exited: {logs(cluster.root)}")
        time.sleep(1.0)
    raise RuntimeError(f"nodes not idle after {START_TIMEOUT:.0f} s: {logs(cluster.root)}")


def logs(root: Path) -> str:
    tails = []
    for path in sorted(root.glob("*.log")):
        text = path.read_text(errors="replace").strip().splitlines()[-5:]
        tails.append(f"{path.name}: " + " | ".join(text))
    return "; ".join(tails)


@contextlib.contextmanager
def slurm_cluster(root: Path, node_count: int = 2) -> Iterator[SlurmCluster]:
    """A running cluster of ``node_count`` compute nodes; everything stops on exit."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # munged's socket directory must be reachable by every user
    for sub in ("state", "spool"):
        (root / sub).mkdir(exist_ok=True)
    with emulated_network(None, node_count + 1) as net:
        controller, nodes = net.hosts[0], net.hosts[1:]
        socket = start_munge(root)
        conf = root / "slurm.conf"
        conf.write_text(slurm_conf(root, controller, nodes, socket))
        env = {**os.environ, "SLURM_CONF": str(conf)}
        for key in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
            env.pop(key)  # not inside some outer allocation
        cluster = SlurmCluster(root, controller, nodes, env)
        try:
            cluster.daemons["ctl"] = start_daemon(
                controller, "ctl", ["slurmctld", "-D", "-i"], env, root / "ctl.out"
            )
            for k, host in enumerate(nodes):
                name = f"node{k + 1}"
                (root / "spool" / name).mkdir(exist_ok=True)
                cluster.daemons[name] = start_daemon(
                    host, name, ["slurmd", "-D"], env, root / f"{name}.out"
                )
            wait_until_idle(cluster)
            yield cluster
        finally:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                cluster.client("scancel", "--user", "root", timeout=30)
            for proc in cluster.daemons.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            for proc in cluster.daemons.values():
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            stop_munge(root)
            for index in range(len(nodes)):  # step daemons and tasks outlive their slurmd
                cluster.lose_node(index, wait=False)
