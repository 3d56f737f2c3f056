"""DDP and sequential runs through the real launcher (torchrun, gloo, 1-2 processes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from distbench.config import RunConfig
from distbench.harness.session import run_benchmarks
from distbench.strategies.common import build_module

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(240)]


def small(strategy: str, workers: int, batch: int, weights: Path, **kw: object) -> RunConfig:
    return RunConfig(
        model="lenet5",
        strategy=strategy,
        workers=workers,
        batch_size=batch,
        steps=5,
        warmup=0,
        threads=1,
        lr=0.05,
        momentum=0.9,
        save_weights=str(weights),
        timeout=180,
        **kw,  # type: ignore[arg-type]
    )


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_ddp_two_ranks_equal_sequential_on_doubled_batch(tmp_path: Path, db_path: Path) -> None:
    seq = small("sequential", 1, 16, tmp_path / "seq.npz")
    ddp = small("ddp", 2, 8, tmp_path / "ddp.npz")
    rows = run_benchmarks([seq, ddp], db_path)
    assert [r.status for r in rows] == ["ok", "ok"], [r.error for r in rows]
    a, b = load(tmp_path / "seq.npz"), load(tmp_path / "ddp.npz")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5, err_msg=name)
    # both trained: the weights moved away from the seed-0 initial weights they share
    initial, _ = build_module(seq, torch.device("cpu"))
    start = {k: v.detach().numpy() for k, v in initial.state_dict().items()}
    assert any(not np.allclose(a[n], start[n]) for n in a if n in start)


def test_sequential_is_reproducible_with_fixed_seed(tmp_path: Path, db_path: Path) -> None:
    runs = [small("sequential", 1, 8, tmp_path / f"w{i}.npz") for i in range(2)]
    other_seed = small("sequential", 1, 8, tmp_path / "w_other.npz", seed=1)
    rows = run_benchmarks([*runs, other_seed], db_path)
    assert all(r.status == "ok" for r in rows)
    first, second, other = (load(tmp_path / f) for f in ("w0.npz", "w1.npz", "w_other.npz"))
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    assert any(not np.array_equal(first[n], other[n]) for n in first)


def test_ddp_result_has_breakdown_comm_and_speedup(tmp_path: Path, db_path: Path) -> None:
    base = dict(model="lenet5", batch_size=8, steps=6, warmup=1, timeout=180)
    rows = run_benchmarks(
        [
            RunConfig(strategy="sequential", **base),  # type: ignore[arg-type]
            RunConfig(strategy="ddp", workers=2, **base),  # type: ignore[arg-type]
        ],
        db_path,
    )
    seq, ddp = rows
    assert ddp.status == "ok", ddp.error
    assert ddp.baseline_run_id == seq.run_id
    assert ddp.speedup is not None and ddp.speedup > 0
    assert ddp.efficiency == pytest.approx(ddp.speedup / 2)
    for phase in ("forward", "backward", "comm"):
        assert ddp.breakdown[phase] > 0, phase
    assert ddp.comm_total is not None and ddp.comm_total > 0
    assert sum(ddp.breakdown.values()) == pytest.approx(ddp.step_time_mean, rel=0.10)
    assert ddp.global_batch == 16 and ddp.local_batch == 8
    assert len(ddp.per_rank) == 2
