"""The SLURM launcher's pieces that need no cluster: the batch script, reading SLURM's
answers, what a node decides from its job's environment, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.harness import slurm, slurm_node
from distbench.harness.slurm import JobState, SlurmOptions, batch_script, parse_fields
from distbench.store.result import RunResult


def test_the_batch_script_asks_for_one_task_per_node_and_runs_the_node_task_with_this_python(
    tmp_path: Path,
) -> None:
    options = SlurmOptions(nodes=4, partition="gpu", time="00:30:00", account="ml")
    script = batch_script(options, tmp_path)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for directive in (
        "--nodes=4",
        "--ntasks-per-node=1",
        "--no-requeue",
        "--partition=gpu",
        "--time=00:30:00",
        "--account=ml",
        f"--output={tmp_path / 'slurm-%j.out'}",
    ):
        assert f"#SBATCH {directive}" in lines
    last = lines[-1]
    assert last.startswith("exec srun --nodes=4 --ntasks=4 --ntasks-per-node=1")
    assert f"{sys.executable} -m distbench.harness.slurm_node {tmp_path}" in last


def test_options_left_to_the_cluster_are_not_written() -> None:
    script = batch_script(SlurmOptions(nodes=1), Path("/shared/job"))
    assert "--partition" not in script and "--time" not in script and "--account" not in script


def test_scontrol_one_line_output_is_read_as_fields() -> None:
    line = (
        "JobId=12 JobName=distbench JobState=CANCELLED Reason=None Dependency=(null) "
        "ExitCode=0:15 NodeList=node[1-2] Command=/x/job.sbatch"
    )
    fields = parse_fields(line)
    assert fields["JobState"] == "CANCELLED"
    assert fields["ExitCode"] == "0:15"
    assert fields["NodeList"] == "node[1-2]"


@pytest.mark.parametrize(
    ("state", "words"),
    [
        (JobState("7", "CANCELLED", "None", "0:15"), "SLURM job 7 CANCELLED: cancelled"),
        (JobState("7", "TIMEOUT", "TimeLimit", "0:0"), "reached its time limit (reason TimeLimit)"),
        (JobState("7", "NODE_FAIL", "", "1:0"), "a node of the job failed (exit code 1:0)"),
    ],
)
def test_a_final_state_is_described_in_slurms_words_and_plain_ones(
    state: JobState, words: str
) -> None:
    assert state.final
    assert words in state.describe()


def test_pending_and_running_are_not_final() -> None:
    assert not JobState("1", "PENDING").final
    assert not JobState("1", "RUNNING").final


def test_a_stored_configuration_matches_whatever_slurm_decided_for_it() -> None:
    cfg = RunConfig(model="lenet5", strategy="ddp", workers=2, nnodes=2)
    ran = cfg.replace(node_rank=0, master_addr="10.0.0.5", master_port=29512).to_dict()
    assert slurm.same_configuration(ran, cfg)
    assert not slurm.same_configuration({**ran, "workers": 4}, cfg)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"master_addr": "10.0.0.1"}, "--master-addr is chosen by SLURM"),
        ({"node_rank": 1, "nnodes": 2}, "--node-rank is chosen by SLURM"),
        ({"network": "bandwidth=1gbit"}, "not with SLURM"),
    ],
)
def test_what_slurm_decides_cannot_be_given_too(changes: dict[str, object], message: str) -> None:
    cfg = RunConfig(model="lenet5", strategy="ddp", workers=2, **changes)  # type: ignore[arg-type]
    with pytest.raises(UserError, match=message):
        slurm.check_options([cfg])


def test_a_node_takes_its_rank_count_and_rendezvous_from_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[list[str]] = []

    def fake_run(args: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        asked.append(args)
        out = {
            "hostnames": "node3\nnode4\n",
            "node": "NodeName=node3 Arch=x86_64 NodeAddr=10.1.2.3 NodeHostName=node3",
        }[args[2]]
        return subprocess.CompletedProcess(args, 0, out, "")

    monkeypatch.setattr(slurm_node.subprocess, "run", fake_run)
    settings = slurm_node.job_settings(
        {
            "SLURM_JOB_ID": "2041",
            "SLURM_JOB_NUM_NODES": "2",
            "SLURM_NODEID": "1",
            "SLURM_JOB_NODELIST": "node[3-4]",
        }
    )
    assert settings == {
        "nnodes": 2,
        "node_rank": 1,
        "master_addr": "10.1.2.3",
        "master_port": slurm_node.PORT_BASE + 2041 % slurm_node.PORT_SPAN,
    }
    assert asked[0] == ["scontrol", "show", "hostnames", "node[3-4]"]
    assert asked[1] == ["scontrol", "show", "node", "-o", "node3"]


def test_the_output_follower_forwards_whole_lines_only(tmp_path: Path) -> None:
    out = tmp_path / "slurm-1.out"
    seen: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            seen.append(text)

        def flush(self) -> None:
            pass

    follow = slurm.OutputFollower(out, Sink())  # type: ignore[arg-type]
    follow()  # no file yet
    out.write_text("round 1/5 lenet5\nhalf a li")
    follow()
    with out.open("a") as handle:
        handle.write("ne\n")
    follow()
    assert "".join(seen) == "round 1/5 lenet5\nhalf a line\n"


def test_slurms_reason_leads_and_what_node_0_stored_follows() -> None:
    row = RunResult(
        run_id="r",
        status="failed",
        error="interrupted (Ctrl-C or SIGTERM) after 0 of 1 rounds",
        created_at="2026-12-06",
        model="lenet5",
        dataset="synthetic",
        strategy="ddp",
        framework="torch",
        workers=2,
        global_batch=64,
        local_batch=32,
        scaling="weak",
    )
    combined = slurm.combined_error("SLURM job 9 CANCELLED", row)
    assert combined == (
        "SLURM job 9 CANCELLED; node 0: interrupted (Ctrl-C or SIGTERM) after 0 of 1 rounds"
    )
    row.status, row.error = "running", None
    assert slurm.combined_error("SLURM job 9 TIMEOUT", row) == "SLURM job 9 TIMEOUT"
    row.status, row.error = "failed", "rank 1: RuntimeError: boom"
    assert slurm.combined_error(None, row) == "rank 1: RuntimeError: boom"


def test_dry_run_prints_a_script_that_can_be_submitted_by_hand_and_submits_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from distbench.cli.main import main

    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm"))  # sbatch would fail if called
    db = tmp_path / "results.db"
    argv = ["run", "--model", "lenet5", "--strategy", "ddp", "--workers", "4"]
    argv += ["--launcher", "slurm", "--nnodes", "2", "--slurm-time", "10", "--dry-run"]
    assert main([*argv, "--db", str(db)]) == 0
    out, err = capsys.readouterr()
    assert "#SBATCH --nodes=2" in out and "#SBATCH --time=10" in out
    [script] = (tmp_path / "distbench-runs").glob("slurm-*/job.sbatch")
    assert script.read_text() == out
    assert f"not submitted; to submit it yourself: sbatch {script}" in err
    job = json.loads((script.parent / "job.json").read_text())
    assert job["db"] == str(db)
    assert [c["workers"] for c in job["configs"]] == [4]
    assert not db.exists()
