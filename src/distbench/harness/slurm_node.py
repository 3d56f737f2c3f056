"""The task each node of a SLURM job runs: ``python -m distbench.harness.slurm_node JOB_DIR``.

It reads the configurations the submitter wrote (``job.json``), fills in what SLURM
decided — the node count, this node's rank, node 0's address as the rendezvous — and
measures them like any multi-node run (``run_benchmarks``): one torchrun per node, node 0
stores every result. Exit codes: 0 done, 1 a run failed, 2 bad input; the reason of a
failure is also written to ``JOB_DIR/failure.txt`` for the submitter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from distbench.config import RunConfig
from distbench.errors import RunFailed, UserError
from distbench.harness.slurm import ask_slurm, parse_fields

#: Ports for the rendezvous: one per job, so two jobs sharing a node do not collide.
PORT_BASE, PORT_SPAN = 29500, 2000


def first_node(nodelist: str) -> str:
    """The first host name of a SLURM node list (``node[1-4]`` → ``node1``)."""
    done = ask_slurm(["scontrol", "show", "hostnames", nodelist])
    names = done.stdout.split() if done.returncode == 0 else []
    if not names:
        raise RunFailed(f"scontrol cannot expand the node list {nodelist!r}: {done.stderr.strip()}")
    return names[0]


def node_address(name: str) -> str:
    """The address SLURM reaches the node at (``NodeAddr``), else its name."""
    return (
        parse_fields(ask_slurm(["scontrol", "show", "node", "-o", name]).stdout).get("NodeAddr")
        or name
    )


def interface_for(address: str) -> str | None:
    """The interface gloo should use to reach node 0: the one holding ``address`` on node 0
    itself, else the one the route to it leaves by. None when ``ip`` cannot tell."""
    for args in (
        ["ip", "-o", "addr", "show", "to", address],
        ["ip", "-o", "route", "get", address],
    ):
        try:
            done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=10)
        except FileNotFoundError:
            return None
        words = done.stdout.split()
        if args[2] == "addr" and len(words) > 1:  # "2: eth0    inet 10.0.0.1/24 ..."
            return words[1]
        if "dev" in words:
            device = words[words.index("dev") + 1]
            return None if device == "lo" else device
    return None


def job_settings(env: dict[str, str]) -> dict[str, Any]:
    """The settings SLURM decided, from the job's environment."""
    nodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    job_id = int(env.get("SLURM_JOB_ID") or 0)
    return {
        "nnodes": nodes,
        "node_rank": int(env.get("SLURM_NODEID") or 0),
        "master_addr": node_address(first_node(env["SLURM_JOB_NODELIST"])),
        "master_port": PORT_BASE + job_id % PORT_SPAN,
    }


def run_job(job_dir: Path) -> int:
    from rich.console import Console

    from distbench.cli.run import ProgressView
    from distbench.harness.environment import SLURM_JOB_DIR_VARIABLE
    from distbench.harness.session import run_benchmarks

    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    os.environ[SLURM_JOB_DIR_VARIABLE] = str(job_dir)  # stored with node 0's rows
    settings = job_settings(dict(os.environ))
    if settings["nnodes"] > 1 and "GLOO_SOCKET_IFNAME" not in os.environ:
        interface = interface_for(settings["master_addr"])
        if interface:
            os.environ["GLOO_SOCKET_IFNAME"] = interface
    configs = [RunConfig.from_dict({**data, **settings}) for data in job["configs"]]
    view = ProgressView(Console(stderr=True))  # node 0's round lines reach the submitter
    try:
        rows = run_benchmarks(configs, job["db"], view)
    finally:
        view.progress.stop()
    failed = [row for row in rows if not row.ok]
    for row in failed:
        sys.stderr.write(f"run {row.run_id} failed: {row.error}\n")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job_dir = Path(args[0])
    rank = os.environ.get("SLURM_NODEID", "0")
    try:
        return run_job(job_dir)
    except (UserError, RunFailed) as exc:
        why = f"node {rank}: {exc}"
        sys.stderr.write(why + "\n")
        (job_dir / "failure.txt").write_text(why + "\n", encoding="utf-8")
        return 2 if isinstance(exc, UserError) else 1


if __name__ == "__main__":
    raise SystemExit(main())
