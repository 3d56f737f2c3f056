"""Cross-framework runs: ``distbench compare`` and adapter runs, each in a subprocess.

They need the TensorFlow and MXNet environments (and Horovod's, for its one test). When one
is absent the tests install it (``distbench env install``, time-boxed) only if ``CI`` is set
or ``DISTBENCH_FRAMEWORK_TESTS=1``; otherwise they skip and say why. Installed environments
stay under ``$DISTBENCH_ENVS`` (default ``~/.cache/distbench/envs``), so later runs reuse
them: the first time, about 1.5 minutes for TensorFlow and MXNet together and 7.5 minutes
for Horovod's source build on our 2-core host.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ensure_framework_envs

pytestmark = [pytest.mark.integration]

CLI = [sys.executable, "-m", "distbench.cli.main"]
FRAMEWORKS = ("tensorflow", "mxnet")


@pytest.fixture(scope="module")
def framework_envs() -> None:
    """Make sure both environments exist, installing them only where allowed."""
    ensure_framework_envs(FRAMEWORKS, "~4 minutes, ~2 GB")


@pytest.fixture(scope="module")
def horovod_env() -> None:
    """Horovod is built from source against this torch: ~7.5 minutes on our 2-core host."""
    ensure_framework_envs(("horovod",), "a source build, ~8 minutes")


@pytest.mark.timeout(2700)
def test_env_list_shows_versions(framework_envs: None) -> None:
    listed = subprocess.run(
        [*CLI, "env", "list", "--json"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["tensorflow"]["versions"]["tensorflow-cpu"].startswith("2.")
    assert rows["mxnet"]["versions"] == {"mxnet": "1.9.1", "numpy": "1.23.5"}


@pytest.mark.timeout(900)
def test_compare_lenet5_passes_all_checks(framework_envs: None, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *CLI,
            "compare",
            "--model",
            "lenet5",
            "--frameworks",
            "torch,tensorflow,mxnet",
            "--threads",
            "1",
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=880,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["passed"]
    for result in report["results"]:
        judged = [c for c in result["checks"] if c["judged"]]
        assert [c["passed"] for c in judged] == [True, True, True], result["framework"]
        assert judged[0]["max_deviation"] == 0.0  # the weights are loaded exactly


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("framework", "strategy"), [("tensorflow", "allreduce"), ("mxnet", "ps-async")]
)
def test_adapter_run_is_stored_like_pytorch(
    framework_envs: None, tmp_path: Path, framework: str, strategy: str
) -> None:
    done = subprocess.run(
        [
            *CLI,
            "run",
            "--model",
            "lenet5",
            "--framework",
            framework,
            "--strategy",
            strategy,
            "--workers",
            "2",
            "--steps",
            "4",
            "--warmup",
            "1",
            "--batch-size",
            "8",
            "--threads",
            "1",
            "--timeout",
            "600",
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=880,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(done.stdout)
    assert row["status"] == "ok", row["error"]
    assert (row["framework"], row["strategy"], row["workers"]) == (framework, strategy, 2)
    assert row["throughput_median"] > 0 and row["breakdown"]
    assert {r["rank"] for r in row["per_rank"]} == {0, 1}
    listed = subprocess.run(
        [*CLI, "results", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert framework in {r["framework"] for r in json.loads(listed.stdout)}


def _profiled_run(tmp_path: Path, framework: str) -> dict:
    done = subprocess.run(
        [
            *CLI,
            "run",
            "--model",
            "lenet5",
            "--framework",
            framework,
            "--strategy",
            "sequential",
            "--steps",
            "6",
            "--warmup",
            "1",
            "--batch-size",
            "8",
            "--threads",
            "1",
            "--profile-ops",
            "--timeout",
            "600",
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=880,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(done.stdout)
    assert row["status"] == "ok", row["error"]
    return row


@pytest.mark.timeout(900)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_explain_compares_operators_with_pytorch(
    framework_envs: None, tmp_path: Path, framework: str
) -> None:
    """Operator profiles in another framework: the framework's profiler, stored like
    torch.profiler's, compared with a PyTorch run by common operator names."""
    from distbench.profiling.opnames import common_profile

    theirs = _profiled_run(tmp_path, framework)
    assert theirs["operators"]["framework"] == framework
    assert (tmp_path / "distbench-runs" / theirs["run_id"] / "trace_rank0.json").is_file()
    ours = _profiled_run(tmp_path, "torch")
    for row in (ours, theirs):
        names = {op["name"] for op in common_profile(row["operators"], row["framework"])["top"]}
        assert {"conv2d", "conv2d_backward", "matmul", "sgd_update"} <= names, (
            row["framework"],
            sorted(names),
        )
    done = subprocess.run(
        [*CLI, "explain", ours["run_id"], theirs["run_id"], "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    explanation = json.loads(done.stdout)
    assert explanation["operators"], explanation["conclusion"]
    assert any("common names" in note for note in explanation["notes"])


@pytest.mark.timeout(2400)
def test_horovod_trains_like_ddp_and_profiles_its_operators(
    horovod_env: None, tmp_path: Path
) -> None:
    """Horovod's ring all-reduce and DDP's on the same seed, model and batches: the same
    final loss; Horovod ranks record torch.profiler operator profiles."""
    rows = {}
    for framework, strategy in (("horovod", "allreduce"), ("torch", "ddp")):
        done = subprocess.run(
            [
                *CLI,
                "run",
                "--model",
                "lenet5",
                "--framework",
                framework,
                "--strategy",
                strategy,
                "--workers",
                "2",
                "--steps",
                "6",
                "--warmup",
                "1",
                "--batch-size",
                "8",
                "--threads",
                "1",
                "--profile-ops",
                "--timeout",
                "600",
                "--json",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=880,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        (row,) = json.loads(done.stdout)
        assert row["status"] == "ok", row["error"]
        rows[framework] = row
    hvd = rows["horovod"]
    assert {r["rank"] for r in hvd["per_rank"]} == {0, 1}
    assert hvd["breakdown"]["comm"] >= 0 and hvd["operators"]["phases"]["backward"]["ops"]
    assert hvd["final_loss"] == pytest.approx(rows["torch"]["final_loss"], rel=1e-5)


TINY_BN_MODEL = """
from torch import nn


class TinyBN(nn.Sequential):
    default_input_size = 8
    default_channels = 3

    def __init__(self, num_classes=10):
        super().__init__(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, num_classes))
"""


@pytest.mark.timeout(900)
def test_comparator_catches_a_wrong_batch_norm_epsilon(
    framework_envs: None, tmp_path: Path
) -> None:
    """A user model with batch-norm in training mode passes; the same model with Keras'
    default epsilon (1e-3 instead of PyTorch's 1e-5) in TensorFlow fails, naming layers."""
    import copy

    from distbench.frameworks import compare
    from distbench.frameworks.spec import iter_nodes

    path = tmp_path / "tiny.py"
    path.write_text(TINY_BN_MODEL)
    ref = compare.run_reference(f"{path}:TinyBN", 8, 2, 0.05, 0, 10, None)
    tol = compare.Tolerances()
    for framework in FRAMEWORKS:
        run = compare.run_framework(framework, ref, tmp_path / "ok", 0.05, 0.0, 600, 1)
        checks = compare.check_framework(framework, ref, run, tol, 2)
        assert all(c.passed for c in checks if c.judged), [c.summary() for c in checks]
    wrong = copy.deepcopy(ref)
    for node in iter_nodes(wrong.spec["nodes"]):
        if node["op"] == "bn":
            node["eps"] = 1e-3
    run = compare.run_framework("tensorflow", wrong, tmp_path / "bad", 0.05, 0.0, 600, 1)
    _, loss, trained, _ = compare.check_framework("tensorflow", ref, run, tol, 2)
    assert not loss.passed and not trained.passed
    assert "1.weight" in {d.name for d in trained.failures}  # the batch-norm layer's gamma


@pytest.mark.timeout(2400)
def test_horovod_trains_to_a_target_as_ddp_does(horovod_env: None, tmp_path: Path) -> None:
    """distbench's own stopping rule inside Horovod: rank 0 evaluates, Horovod broadcasts
    the decision, and the stored goal has the same shape as a PyTorch rank's."""
    done = subprocess.run(
        [
            *CLI, "run", "--model", "lenet5", "--dataset", "digits", "--framework", "horovod",
            "--strategy", "allreduce", "--workers", "2", "--batch-size", "32", "--lr", "0.02",
            "--momentum", "0.9", "--target-accuracy", "0.8", "--threads", "1", "--json",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=880,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(done.stdout)
    assert row["status"] == "ok", row["error"]
    goal = row["extra"]["convergence"]
    assert goal["reached"] is True and goal["final_accuracy"] >= 0.8
    assert goal["steps_to_accuracy"] % 10 == 0 and row["steps"] is None
    assert goal["curve"][-1]["step"] == goal["steps_to_accuracy"]


def _to_target(tmp_path: Path, framework: str, strategy: str, workers: int) -> dict:
    done = subprocess.run(
        [
            *CLI, "run", "--model", "lenet5", "--dataset", "digits", "--framework", framework,
            "--strategy", strategy, "--workers", str(workers), "--batch-size", "32",
            "--lr", "0.02", "--momentum", "0.9", "--target-accuracy", "0.8", "--threads", "1",
            "--timeout", "600", "--json",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=880,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(done.stdout)
    assert row["status"] == "ok", row["error"]
    return row


def _steps_taken(tmp_path: Path, run_id: str) -> dict[int, int]:
    """Steps each worker recorded, from its rank{R}.jsonl."""
    taken = {}
    for path in (tmp_path / "distbench-runs" / run_id).glob("rank*.jsonl"):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        taken[int(path.stem[4:])] = sum(1 for r in lines if r["kind"] == "step")
    return taken


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_adapters_train_to_a_target_by_distbench_rule(
    framework_envs: None, tmp_path: Path, framework: str
) -> None:
    """TensorFlow and MXNet follow measurement/goal.py's rule in their own workers: one
    worker, from the same weights and batches, stops at the same evaluation as PyTorch;
    synchronous workers all stop at the deciding step; asynchronous runs count updates."""
    torch_row = _to_target(tmp_path, "torch", "sequential", 1)
    sequential = _to_target(tmp_path, framework, "sequential", 1)
    ours, theirs = torch_row["extra"]["convergence"], sequential["extra"]["convergence"]
    assert theirs["reached"] is True and theirs["final_accuracy"] >= 0.8
    assert abs(theirs["steps_to_accuracy"] - ours["steps_to_accuracy"]) <= 10  # one evaluation
    assert theirs["curve"][-1]["step"] == theirs["steps_to_accuracy"]
    assert theirs["eval_peak_rss_bytes"] > 0 and theirs["time_to_accuracy_s"] > 0

    synchronous = {"tensorflow": "allreduce", "mxnet": "ps-sync-join"}[framework]
    sync = _to_target(tmp_path, framework, synchronous, 2)
    goal = sync["extra"]["convergence"]
    assert goal["reached"] is True and goal["samples_per_step"] == 64
    assert set(_steps_taken(tmp_path, sync["run_id"]).values()) == {goal["steps_to_accuracy"]}

    asynchronous = _to_target(tmp_path, framework, "ps-async", 2)
    goal = asynchronous["extra"]["convergence"]
    assert goal["reached"] is True and goal["samples_per_step"] == 32
    updates = sum(_steps_taken(tmp_path, asynchronous["run_id"]).values())
    assert goal["steps_to_accuracy"] <= updates  # updates in the evaluated weights
    times = [p["train_s"] for p in goal["curve"]]
    assert times == sorted(times) and goal["time_to_accuracy_s"] == times[-1]
