"""Pipeline and model parallelism through the real launcher (torchrun, gloo, 2 ranks).

Equivalence: with the same global batch, gpipe, 1f1b and model-parallel end with the
weights of sequential training (lenet5: no batch norm, whose statistics micro-batching
changes). Coverage: the zoo's big models run as 2-stage pipelines, and the CLI's
``--json`` output carries the plan, per-stage times and the measured bubble.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from distbench.config import RunConfig
from distbench.harness.session import run_benchmarks
from distbench.registry import check_run

pytestmark = [pytest.mark.distributed]


def lenet(strategy: str, workers: int, weights: Path, **kw: Any) -> RunConfig:
    return RunConfig(
        model="lenet5",
        strategy=strategy,
        workers=workers,
        batch_size=16,
        steps=3,
        warmup=0,
        threads=1,
        lr=0.05,
        momentum=0.9,
        save_weights=str(weights),
        timeout=180,
        **kw,
    )


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.timeout(240)
def test_pipelines_end_with_sequential_weights(tmp_path: Path, db_path: Path) -> None:
    configs = [
        lenet("sequential", 1, tmp_path / "seq.npz"),
        lenet("pipeline-gpipe", 2, tmp_path / "gpipe.npz", microbatches=4),
        lenet("pipeline-1f1b", 2, tmp_path / "1f1b.npz", microbatches=4, partition="profiled"),
        lenet("model-parallel", 2, tmp_path / "mp.npz"),
    ]
    rows = run_benchmarks(configs, db_path)
    assert [r.status for r in rows] == ["ok"] * 4, [r.error for r in rows]
    reference = load(tmp_path / "seq.npz")
    for name in ("gpipe", "1f1b", "mp"):
        trained = load(tmp_path / f"{name}.npz")
        assert list(trained) == list(reference), name  # same names, same order
        for key in reference:
            np.testing.assert_allclose(
                trained[key], reference[key], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {key}"
            )
    seq_loss = rows[0].final_loss
    for row in rows[1:]:
        assert row.final_loss == pytest.approx(seq_loss, rel=1e-5), row.strategy
        assert row.global_batch == 16 and row.scaling == "strong"


def _check_stage_figures(extra: dict[str, Any], stages: int) -> None:
    per_stage = extra["per_stage"]
    assert len(per_stage) == stages
    for figures in per_stage:
        phases = sum(
            figures[f"{p}_s"] for p in ("data", "forward", "backward", "comm", "wait", "update")
        )
        assert phases == pytest.approx(figures["step_s"], rel=1e-6)
        assert figures["forward_s"] > 0 and figures["backward_s"] > 0
        assert figures["forward_cpu_s"] > 0 and figures["backward_cpu_s"] > 0
        assert 0.0 <= figures["bubble"] < 1.0
        assert figures["activation_peak_bytes"] > 0
    assert 0.0 <= extra["bubble_measured"] < 1.0


@pytest.mark.timeout(240)
def test_cli_resnet18_1f1b_profiled_json(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "distbench.cli.main",
        "run",
        "--model",
        "resnet18",
        "--dataset",
        "synthetic",
        "--strategy",
        "pipeline-1f1b",
        # three workers and four micro-batches: no copies of the pipeline divide 4, so the
        # profiled planner must cut three stages
        "--workers",
        "3",
        "--microbatches",
        "4",
        "--partition",
        "profiled",
        "--batch-size",
        "8",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--db",
        "r.db",
        "--json",
    ]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=220)
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads(result.stdout)[0]
    extra = row["extra"]
    assert extra["partition"] == "profiled" and extra["schedule"] == "1f1b"
    assert all(f"stage {s}:" in extra["plan_text"] for s in range(3))
    stages = extra["plan"]["stages"]
    assert stages[0]["start"] == 0 and stages[-1]["stop"] == 12
    assert all(a["stop"] == b["start"] for a, b in itertools.pairwise(stages))
    assert all(s["compute_s"] > 0 and s["replicas"] == 1 for s in stages)
    assert extra["bubble_theoretical"] == pytest.approx(2 / 6)
    _check_stage_figures(extra, 3)
    # 1F1B keeps at most S - s micro-batches in flight on stage s (GPipe keeps all M).
    assert [f["inflight_peak_microbatches"] for f in extra["per_stage"]] == [3, 2, 1]


@pytest.mark.timeout(240)
# resnet18 runs as a 2-stage pipeline in test_cli_resnet18_1f1b_profiled_json.
@pytest.mark.parametrize("model", ["alexnet", "mobilenetv2", "resnet50", "vgg16"])
def test_zoo_model_runs_as_two_stage_pipeline(model: str, db_path: Path) -> None:
    cfg = RunConfig(
        model=model,
        strategy="pipeline-gpipe",
        workers=2,
        batch_size=4,
        microbatches=2,
        steps=1,
        warmup=0,
        threads=1,
        timeout=200,
    )
    [row] = run_benchmarks([cfg], db_path)
    assert row.status == "ok", row.error
    assert row.final_loss is not None and np.isfinite(row.final_loss)
    extra = row.extra
    assert [f["inflight_peak_microbatches"] for f in extra["per_stage"]] == [2, 2]
    _check_stage_figures(extra, 2)


@pytest.mark.timeout(240)
def test_pipedream_runs_without_flushes_and_stashes_what_it_must(
    tmp_path: Path, db_path: Path
) -> None:
    """pipeline-pipedream over gloo point-to-point: the first of two stages runs one
    micro-batch ahead, so its updates land one version after the weights its forwards saw
    and it stashes two copies of its weights; the last stashes nothing."""
    config = lenet("pipeline-pipedream", 2, tmp_path / "pd.npz", microbatches=4)
    (row,) = run_benchmarks([config], db_path)
    assert row.status == "ok", row.error
    extra = row.extra
    assert extra["schedule"] == "pipedream" and extra["updates_per_step"] == 4
    first, last = extra["per_stage"]
    assert (first["delay_updates"], last["delay_updates"]) == (1, 0)
    assert first["stash_peak_bytes"] == 2 * first["param_bytes"]
    assert last["stash_peak_bytes"] == 0
    trained = load(tmp_path / "pd.npz")
    assert all(np.isfinite(v).all() for v in trained.values())
    assert extra["bubble_theoretical"] == 0.0


@pytest.mark.timeout(300)
def test_copies_of_a_pipeline_end_with_sequential_weights(tmp_path: Path, db_path: Path) -> None:
    """Eight workers on lenet5's seven blocks: the profiled planner runs GPipe and
    1F1B-flush as copies of a shorter pipeline (each copy its share of the micro-batches,
    each stage's copies averaging their gradients by DDP), and they still end with the
    weights and the loss of sequential training on the same global batch."""
    configs = [
        lenet("sequential", 1, tmp_path / "seq.npz"),
        lenet("pipeline-gpipe", 8, tmp_path / "gpipe.npz", microbatches=4, partition="profiled"),
        lenet("pipeline-1f1b", 8, tmp_path / "1f1b.npz", microbatches=8, partition="profiled"),
    ]
    rows = run_benchmarks(configs, db_path)
    assert [r.status for r in rows] == ["ok"] * 3, [r.error for r in rows]
    reference = load(tmp_path / "seq.npz")
    for name, row in zip(("gpipe", "1f1b"), rows[1:], strict=True):
        stages = row.extra["plan"]["stages"]
        copies = {s["replicas"] for s in stages}
        assert len(copies) == 1 and len(stages) * copies.pop() == 8, stages  # alike, all used
        trained = load(tmp_path / f"{name}.npz")
        assert list(trained) == list(reference), name
        for key in reference:
            np.testing.assert_allclose(
                trained[key], reference[key], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {key}"
            )
        assert row.final_loss == pytest.approx(rows[0].final_loss, rel=1e-5), name
    # GPipe's four micro-batches cannot go to 8 copies: a pipeline of 2 or 4 stages
    assert len(rows[1].extra["plan"]["stages"]) in (2, 4)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("strategy", ["pipeline-gpipe", "pipeline-1f1b", "pipeline-pipedream"])
def test_pipelines_replay_emulated_compute(strategy: str, db_path: Path) -> None:
    """``--compute T``: every stage waits its blocks' share of ``T`` per micro-batch while
    its transfers (and PipeDream's stashes) stay real; the plan predicts from those times."""
    cfg = RunConfig(
        model="lenet5",
        strategy=strategy,
        workers=3,
        batch_size=16,
        microbatches=4,
        steps=3,
        warmup=1,
        threads=1,
        compute="0.3",
        timeout=180,
    )
    (row,) = run_benchmarks([check_run(cfg)], db_path)
    assert row.status == "ok", row.error
    extra = row.extra
    report = extra["compute"]
    assert report["source"] == "0.3 s" and report["wait_error"] is not None
    stages = extra["per_stage"]
    # the waits add up to the given gradient time per micro-batch, 0.3 / 4 s in all stages
    compute = sum(s["forward_s"] + s["backward_s"] for s in stages)
    per_step_microbatches = 4
    assert compute == pytest.approx(per_step_microbatches * 0.3 / 4, rel=0.25)
    assert extra["predicted_step_s"] is not None and extra["predicted_step_s"] > 0.3 / 4
    if strategy == "pipeline-pipedream":
        assert stages[0]["stash_peak_bytes"] > 0


@pytest.mark.timeout(300)
@pytest.mark.parametrize("workers", [2, 3])
def test_pipedream_trains_to_a_target_and_stops_mid_stream(workers: int, db_path: Path) -> None:
    """PipeDream never flushes: at an evaluation every stage has applied the step's updates
    and rank 0 evaluates the gathered stages; stopping there leaves forwards in transit,
    which the stages take before they end (no hang, no failed rank)."""
    cfg = RunConfig(
        model="lenet5",
        dataset="digits",
        strategy="pipeline-pipedream",
        workers=workers,
        batch_size=32,
        microbatches=4,
        lr=0.01,
        momentum=0.9,
        target_accuracy=0.6,
        threads=1,
        timeout=240,
    )
    (row,) = run_benchmarks([check_run(cfg)], db_path)
    assert row.status == "ok", row.error
    convergence = row.extra["convergence"]
    assert convergence["reached"] and convergence["steps_to_accuracy"] < 1000
    assert convergence["final_accuracy"] >= 0.6
