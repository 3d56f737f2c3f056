"""Runs on a SLURM cluster: one job per invocation, one torchrun per node.

``distbench run … --launcher slurm`` writes the configurations it would run to a job
directory beside the results database (which must be on a path every node sees), then
either submits a batch job (``sbatch``) or, inside an allocation it was started in
(``SLURM_JOB_ID`` set, as under ``salloc``), starts a job step (``srun``). Either way one
task per node runs ``python -m distbench.harness.slurm_node JOB_DIR``, which joins the
nodes the torchrun way (node 0 of the job is the rendezvous) and measures every
configuration like a multi-node run; node 0 stores the results.

The whole invocation is **packed into one allocation**, not one job per configuration:
one wait in the queue instead of one per configuration, and the rounds of different
configurations stay interleaved on the same nodes, so that drift in the cluster falls on
all of them alike (docs/measurement.md). Every configuration therefore runs on the job's
``--nnodes`` nodes.

The submitting distbench waits with progress (queued / running / done, with the job id),
forwards node 0's output, and afterwards stores every configuration the job did not finish
as failed with SLURM's reason (``CANCELLED``, ``TIMEOUT``, ``NODE_FAIL``, …). Ctrl-C
cancels the job.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from distbench.config import RunConfig, setting_field
from distbench.errors import RunFailed, UserError
from distbench.store.result import RunResult

#: How often the submitter asks SLURM for the job's state.
POLL_SECONDS = 2.0
#: Settings SLURM decides for a job; the user may not give them with --launcher slurm.
CHOSEN_BY_SLURM = ("node_rank", "master_addr", "master_port", "nodefile")
#: Job states after which a job never runs again (``squeue --help``, JOB STATE CODES).
FINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)
#: What a final state means, in the words a user needs.
STATE_MEANING = {
    "CANCELLED": "cancelled (scancel, or by an administrator)",
    "TIMEOUT": "reached its time limit",
    "NODE_FAIL": "a node of the job failed",
    "OUT_OF_MEMORY": "a node ran out of memory",
    "PREEMPTED": "preempted by another job",
    "BOOT_FAIL": "a node failed to boot",
    "DEADLINE": "reached its deadline",
    "FAILED": "a task exited non-zero",
}


@dataclass(frozen=True)
class SlurmOptions:
    """How the job is asked for (``#SBATCH`` lines); None leaves it to the cluster's
    defaults."""

    nodes: int = 1
    partition: str | None = None
    time: str | None = None
    account: str | None = None

    def sbatch_lines(self) -> list[str]:
        # --no-requeue: after a node failure SLURM would run the whole job again by default,
        # measuring and storing every configuration twice; the job fails instead
        lines = [f"--nodes={self.nodes}", "--ntasks-per-node=1", "--no-requeue"]
        for name, value in (
            ("partition", self.partition),
            ("time", self.time),
            ("account", self.account),
        ):
            if value is not None:
                lines.append(f"--{name}={value}")
        return lines


@dataclass
class JobState:
    """One look at a job: its state, SLURM's reason and exit code, and its nodes."""

    job_id: str
    state: str
    reason: str = ""
    exit_code: str = ""
    nodes: str = ""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def describe(self) -> str:
        """``SLURM job 12 CANCELLED: cancelled (scancel, …) (reason …, exit code 0:15)``."""
        meaning = STATE_MEANING.get(self.state)
        details = [f"reason {self.reason}"] if self.reason and self.reason != "None" else []
        if self.exit_code and self.exit_code != "0:0":
            details.append(f"exit code {self.exit_code}")
        tail = f" ({', '.join(details)})" if details else ""
        return f"SLURM job {self.job_id} {self.state}{': ' + meaning if meaning else ''}{tail}"


# -- the job directory and its batch script ---------------------------------------------------
def job_directory(runs_dir: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = runs_dir / f"slurm-{stamp}-{os.getpid()}"
    path.mkdir(parents=True)
    return path


def write_job(job_dir: Path, configs: list[RunConfig], db_path: Path) -> None:
    """What every node needs to run its part: the configurations and where to store them."""
    payload = {"db": str(db_path), "configs": [cfg.to_dict() for cfg in configs]}
    (job_dir / "job.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")


def node_command(job_dir: Path) -> list[str]:
    """The command each node's task runs: this Python, so the nodes use the same environment."""
    return [sys.executable, "-m", "distbench.harness.slurm_node", str(job_dir)]


def srun_command(options: SlurmOptions, job_dir: Path) -> list[str]:
    """One task per node; ``--kill-on-bad-exit`` stops the other nodes when one fails."""
    return [
        "srun",
        f"--nodes={options.nodes}",
        f"--ntasks={options.nodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        *node_command(job_dir),
    ]


def batch_script(options: SlurmOptions, job_dir: Path) -> str:
    """The script ``sbatch`` gets (``--dry-run`` prints it)."""
    directives = [
        "--job-name=distbench",
        f"--output={job_dir / 'slurm-%j.out'}",
        *options.sbatch_lines(),
    ]
    lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives)]
    lines += [
        "# One distbench per node (srun), node 0 of the job is the rendezvous;",
        "# node 0 stores every result in the database named in job.json.",
        "set -eu",
        f"cd {shlex.quote(str(Path.cwd()))}",
        f"exec {shlex.join(srun_command(options, job_dir))}",
    ]
    return "\n".join(lines) + "\n"


# -- asking SLURM -----------------------------------------------------------------------------
def require_command(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise UserError(
            f"--launcher slurm needs `{name}` on PATH (run on a SLURM login node, or "
            "install SLURM's client commands)"
        )
    return path


def ask_slurm(args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run one SLURM client command, its output captured, never raising on its exit code."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def submit(script: Path) -> str:
    """``sbatch --parsable``; a job SLURM rejects (an unknown partition, a bad time) is
    bad input, in SLURM's own words."""
    done = ask_slurm([require_command("sbatch"), "--parsable", str(script)])
    if done.returncode != 0:
        why = " ".join(done.stderr.split()) or f"exit code {done.returncode}"
        raise UserError(f"sbatch rejected the job: {why}")
    return done.stdout.strip().split(";")[0]


def parse_fields(text: str) -> dict[str, str]:
    """``scontrol … -o`` prints one line of ``Key=Value`` pairs."""
    fields: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep:
            fields.setdefault(key, value)
    return fields


def job_state(job_id: str) -> JobState | None:
    """The job's state from ``scontrol show job`` (kept by slurmctld for a while after the
    job ends), else from accounting (``sacct``); None when neither knows the job."""
    shown = ask_slurm(["scontrol", "show", "job", "-o", job_id])
    if shown.returncode == 0 and shown.stdout.strip():
        fields = parse_fields(shown.stdout)
        return JobState(
            job_id,
            fields.get("JobState", "UNKNOWN"),
            fields.get("Reason", ""),
            fields.get("ExitCode", ""),
            fields.get("NodeList", ""),
        )
    if shutil.which("sacct") is None:
        return None
    acct = ask_slurm(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode,NodeList"])
    line = acct.stdout.strip().splitlines()[0] if acct.returncode == 0 and acct.stdout else ""
    if not line:
        return None
    state, exit_code, nodes = ([*line.split("|"), "", ""])[:3]
    return JobState(job_id, state.split()[0], "", exit_code, nodes)


def cancel(job_id: str) -> None:
    ask_slurm(["scancel", job_id])


class OutputFollower:
    """Forwards the lines a job writes to its output file, as they come."""

    def __init__(self, path: Path, sink: TextIO) -> None:
        self.path, self.sink, self.offset = path, sink, 0

    def __call__(self) -> None:
        if not self.path.is_file():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data.rfind(b"\n") + 1  # a half-written line waits for its end
        if complete:
            self.sink.write(data[:complete].decode("utf-8", "replace"))
            self.sink.flush()
            self.offset += complete


def wait_for_job(
    job_id: str,
    follow: Callable[[], None],
    say: Callable[[str], None],
    poll_seconds: float = POLL_SECONDS,
) -> JobState:
    """Poll until the job ends; each change of state is said once. Ctrl-C cancels the job."""
    started = time.monotonic()
    last = ""
    state: JobState | None = None
    try:
        while True:
            state = job_state(job_id)
            follow()
            if state is None:  # forgotten by slurmctld and no accounting: it has ended
                return JobState(job_id, "UNKNOWN", "slurmctld no longer knows the job")
            seen = f"{state.state} {state.reason}"
            if seen != last:
                say(_progress_line(state, time.monotonic() - started))
                last = seen
            if state.final:
                follow()
                return state
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        cancel(job_id)
        say(f"job {job_id}: cancelled (Ctrl-C)")
        raise


def _progress_line(state: JobState, elapsed: float) -> str:
    where = {
        "PENDING": f"queued ({state.reason})",
        "RUNNING": f"running on {state.nodes}",
        "COMPLETING": "completing",
    }.get(state.state, state.state.lower())
    return f"job {state.job_id}: {where} [{elapsed:.0f} s]"


# -- inside an allocation ---------------------------------------------------------------------
def in_allocation() -> bool:
    """Started inside a SLURM allocation (``salloc``, an interactive ``srun --pty``)."""
    return bool(os.environ.get("SLURM_JOB_ID"))


def run_step(options: SlurmOptions, job_dir: Path, say: Callable[[str], None]) -> JobState:
    """``srun`` in the current allocation: its output goes straight to this terminal."""
    require_command("srun")
    job_id = os.environ["SLURM_JOB_ID"]
    say(f"job {job_id}: starting a step on {options.nodes} node(s) of this allocation")
    proc = subprocess.Popen(srun_command(options, job_dir))
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()  # srun passes it on to the tasks and ends the step
        proc.wait()
        raise
    if code == 0:
        state = JobState(job_id, "COMPLETED", nodes=os.environ.get("SLURM_JOB_NODELIST", ""))
    else:
        state = JobState(job_id, "FAILED", f"srun exited with code {code}", f"{code}:0")
    say(f"job {job_id}: step {state.state.lower()}")
    return state


# -- the submitter ----------------------------------------------------------------------------
def check_options(configs: list[RunConfig]) -> None:
    """What SLURM decides may not be given as well."""
    for cfg in configs:
        for name in CHOSEN_BY_SLURM:
            if getattr(cfg, name) != setting_field(name).default:
                flag = "--" + name.replace("_", "-")
                raise UserError(f"{flag} is chosen by SLURM with --launcher slurm; leave it out")
        if cfg.network or cfg.hosts:
            raise UserError("--network/--hosts emulate hosts on one machine: not with SLURM")
        if cfg.framework != "torch":
            raise UserError(
                f"--launcher slurm runs the PyTorch strategies; {cfg.framework} runs locally"
            )


def prepare_job(configs: list[RunConfig], db_path: Path, options: SlurmOptions) -> Path:
    """The job directory with its configurations and batch script; returns the script.
    (``--dry-run`` stops here: the script can be submitted by hand as it is.)"""
    from distbench.harness.session import runs_dir_for

    check_options(configs)
    job_dir = job_directory(runs_dir_for(db_path))
    write_job(job_dir, configs, db_path)
    script = job_dir / "job.sbatch"
    script.write_text(batch_script(options, job_dir), encoding="utf-8")
    return script


def submit_job(script: Path) -> str:
    """Submit the batch script; a rejected job leaves nothing behind."""
    try:
        return submit(script)
    except UserError:
        shutil.rmtree(script.parent, ignore_errors=True)  # nothing was queued
        raise


def node_failure(job_dir: Path) -> str | None:
    """Why a node's distbench stopped, when it wrote it down (``slurm_node``)."""
    path = job_dir / "failure.txt"
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def job_failed(state: JobState, job_dir: Path) -> RunFailed:
    why = node_failure(job_dir)
    return RunFailed(state.describe() + (f"; {why}" if why else ""))


# -- results ----------------------------------------------------------------------------------
#: Settings that differ between the submitted configuration and the one a node ran.
LAUNCH_FIELDS = ("nnodes", "node_rank", "master_addr", "master_port")


def same_configuration(stored: dict[str, object], cfg: RunConfig) -> bool:
    """Whether a stored run's configuration is ``cfg``, leaving out what SLURM decided."""
    wanted = cfg.to_dict()
    return all(
        stored.get(key) == value for key, value in wanted.items() if key not in LAUNCH_FIELDS
    )


def combined_error(failure: str | None, row: RunResult) -> str:
    """SLURM's reason first when the job did not complete, then what node 0 had stored."""
    own = row.error if row.status == "failed" else None
    if failure and own:
        return f"{failure}; node 0: {own}"
    return failure or own or "the job ended during this run"


def job_results(
    configs: list[RunConfig], db_path: Path, state: JobState, job_dir: Path
) -> list[RunResult]:
    """Every configuration's stored row from this job; one the job did not finish is stored
    as failed with SLURM's reason (a row node 0 left ``running`` becomes failed, a
    configuration that never started gets a failed row of its own)."""
    from distbench.harness.environment import capture_environment
    from distbench.harness.session import describe_run, new_run_id, runs_dir_for
    from distbench.store.db import open_store

    store = open_store(db_path)
    try:
        mine = [
            row
            for row in store.query()
            # an allocation can hold several invocations: only this one's rows
            if (row.env or {}).get("slurm_job_dir") == str(job_dir)
        ]
        failure = None if state.state == "COMPLETED" else str(job_failed(state, job_dir))
        env: dict[str, object] | None = None
        rows: list[RunResult] = []
        for cfg in configs:
            row = next((r for r in reversed(mine) if same_configuration(r.config, cfg)), None)
            if row is None:
                if env is None:
                    env = {
                        **capture_environment(),
                        "slurm_job_id": state.job_id,
                        "slurm_job_dir": str(job_dir),
                    }
                row = describe_run(cfg, new_run_id(), runs_dir_for(db_path), dict(env))
                row.error = failure or "the job ended without storing this configuration"
                store.insert(row)
            elif row.status != "ok":
                row.error = combined_error(failure, row)
                row.status = "failed"
                store.insert(row)
            rows.append(row)
        return store.with_scaling(rows)
    finally:
        store.close()


def run_on_slurm(
    configs: list[RunConfig], db_path: Path, options: SlurmOptions, say: Callable[[str], None]
) -> list[RunResult]:
    """The whole invocation as one SLURM job — submitted, or a step of the allocation this
    runs in — waited for; the stored rows, failed ones included. After Ctrl-C (the job
    cancelled) every configuration it did not finish is stored as failed too."""
    check_options(configs)
    require_command("srun" if in_allocation() else "sbatch")  # before anything is written
    script = prepare_job(configs, db_path, options)
    job_dir = script.parent
    job_id = os.environ.get("SLURM_JOB_ID", "")
    try:
        if in_allocation():
            state = run_step(options, job_dir, say)
        else:
            job_id = submit_job(script)
            say(f"job {job_id}: submitted ({options.nodes} node(s)); output in {job_dir}")
            follow = OutputFollower(job_dir / f"slurm-{job_id}.out", sys.stderr)
            state = wait_for_job(job_id, follow, say)
    except KeyboardInterrupt:
        interrupted = JobState(job_id, "CANCELLED", "Ctrl-C in the submitting distbench")
        job_results(configs, db_path, interrupted, job_dir)
        raise
    return job_results(configs, db_path, state, job_dir)
