"""The thesis reproduction: its matrix, its estimates, and its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from distbench.errors import UserError
from distbench.predict import formulas as f
from distbench.report.figures import save_figure, thesis_figures
from distbench.store.result import RunResult
from distbench.workflows.thesis import (
    THESIS_NETWORKS,
    thesis_configs,
    thesis_estimate,
    thesis_points,
)


def test_the_matrix_is_the_thesis_one() -> None:
    configs = thesis_configs(list(THESIS_NETWORKS), list(range(1, 9)))
    # per model a sequential baseline; VGG16E: 2 modes x 2 servers x 4; others 3 x 2 x 8
    assert len(configs) == 4 + 2 * 2 * 4 + 3 * (3 * 2 * 8)
    vgg = [c for c in configs if c.model == "vgg16e"]
    assert max(c.workers for c in vgg) == 4
    assert not any(c.strategy == "ps-sync-split" for c in vgg)
    for cfg in configs:
        assert cfg.input_size == 224 and cfg.num_classes == 256
        assert cfg.network == "bandwidth=1gbit"
        assert cfg.compute == f"{THESIS_NETWORKS[cfg.model].t_grad:g}"
    with pytest.raises(UserError, match="unknown thesis network"):
        thesis_configs(["alexnet"], [1])


def test_estimates_are_the_thesis_formulas_of_table_6_1() -> None:
    net = THESIS_NETWORKS["squeezenet"]
    sync = f.sync_distributed(net.t_grad, net.t_comm, 8)
    expected = f.speedup(net.t_grad, 128, (128 / 8) * sync)
    assert thesis_estimate("squeezenet", "sync-join", "sharded", 8) == pytest.approx(expected)
    # VGG16E never pays (the thesis' finding and its estimate agree)
    assert all(thesis_estimate("vgg16e", "sync-join", "central", n) < 1 for n in (2, 3, 4))


def test_points_and_figures_from_stored_rows(tmp_path: Path) -> None:
    rows = []
    for server in ("central", "sharded"):
        for n, speedup in ((1, 0.9), (2, 1.7), (4, 3.0)):
            row = RunResult(
                run_id=f"{server}{n}",
                status="ok",
                created_at="2026-12-03",
                dataset="synthetic",
                framework="torch",
                model="squeezenet",
                strategy="ps-sync-join",
                workers=n,
                config={"servers": server},
            )
            row.speedup, row.speedup_ci = speedup, [speedup - 0.1, speedup + 0.1]
            rows.append(row)
    baseline = RunResult(
        "s", "ok", "2026-12-03", "squeezenet", "synthetic", "sequential", "torch", 1
    )
    rows.append(baseline)
    points = thesis_points(rows)
    assert len(points) == 6
    first = next(p for p in points if p.server == "sharded" and p.workers == 4)
    assert first.measured == 3.0 and first.measured_low == pytest.approx(2.9)
    assert first.thesis_estimate == thesis_estimate("squeezenet", "sync-join", "sharded", 4)
    figures = thesis_figures(points)
    assert [fig.stem for fig in figures] == ["thesis-squeezenet-sync-join"]
    png, svg, _ = save_figure(figures[0], tmp_path)
    assert png.stat().st_size > 0 and svg.is_file()
