"""The HTML report and its figures, from a temporary store filled through the store API."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from distbench.cli.main import main
from distbench.errors import UserError
from distbench.report.figures import (
    latest_by_workers,
    operator_table,
    phases_present,
    speedup_figure,
)
from distbench.report.html import ReportResult, Selection, build_report
from distbench.store import open_store
from distbench.store.result import RunResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def resources(ranks: int) -> dict[str, Any]:
    t = [0.0, 0.25, 0.5, 0.75, 1.0]
    return {
        "t0": 1.7e9,
        "net_scope": "system-wide",
        "window": [0.25, 0.75],
        "ranks": {
            str(r): {
                "t": t,
                "cpu_percent": [0, 90, 95, 99, 10],
                "system_cpu_percent": [50] * 5,
                "rss_bytes": [2**28 + i * 2**20 for i in range(5)],
                "net_sent_bytes": [0, 1e6, 2e6, 3e6, 3e6],
                "net_recv_bytes": [0, 1e6, 2e6, 3e6, 3e6],
            }
            for r in range(ranks)
        },
    }


def operators(scale: float) -> dict[str, Any]:
    ops = {
        "forward": {"aten::mkldnn_convolution": 0.05 * scale},
        "backward": {"aten::convolution_backward": 0.1 * scale, "aten::add_": 0.01},
    }
    return {
        "unit": "seconds per step",
        "steps": [5, 6, 7],
        "top": [],
        "phases": {
            p: {
                "self_s": sum(v.values()),
                "ops": [{"name": n, "self_s": s, "total_s": s, "calls": 1.0} for n, s in v.items()],
            }
            for p, v in ops.items()
        },
    }


def row(
    index: int, model: str, strategy: str, workers: int, status: str = "ok", **extra: Any
) -> RunResult:
    step = 0.1 * (2 if model == "resnet18" else 0.1) * (1 + 0.2 * (workers - 1))
    base: dict[str, Any] = {
        "run_id": f"20260101-0000{index:02d}-aaaa{index:02d}",
        "status": status,
        "error": None if status == "ok" else "rank 1 died: killed by SIGKILL",
        "created_at": f"2026-01-01T00:00:{index:02d}",
        "model": model,
        "dataset": "synthetic",
        "strategy": strategy,
        "framework": "torch",
        "workers": workers,
        "processes": workers,
        "threads_per_worker": 1,
        "global_batch": 32 * workers,
        "local_batch": 32,
        "scaling": "weak",
        "steps": 10,
        "warmup_steps": 2,
    }
    if status == "ok":
        base.update(
            throughput_median=32 * workers / step,
            throughput_ci_low=30 * workers / step,
            throughput_ci_high=34 * workers / step,
            step_time_median=step,
            step_time_p90=step * 1.1,
            step_time_mean=step,
            peak_rss_bytes=2**29,
            breakdown={
                "data": 0.05 * step,
                "forward": 0.35 * step,
                "backward": 0.5 * step,
                **({"comm": 0.05 * step} if workers > 1 else {}),
                "update": 0.05 * step if workers > 1 else 0.1 * step,
            },
            resources=resources(workers),
            oversubscribed=workers > 1,
        )
    base.update(extra)
    return RunResult.from_row(base)


def suite_rows() -> list[RunResult]:
    rows, index = [], 0
    for model in ("lenet5", "resnet18"):
        for strategy, workers in (("sequential", 1), ("ddp", 1), ("ddp", 2)):
            index += 1
            profiled = (model == "resnet18" and strategy == "sequential") or workers == 2
            rows.append(
                row(
                    index,
                    model,
                    strategy,
                    workers,
                    operators=operators(workers) if profiled else None,
                )
            )
    rows.append(row(index + 1, "resnet18", "ddp", 4, status="failed"))
    return rows


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "results.db"
    store = open_store(path)
    for r in suite_rows():
        store.insert(r)
    store.close()
    return path


@pytest.fixture(scope="module")
def full(db: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    """The report of every run, built once for the tests that only read it."""
    return build_report(db, tmp_path_factory.mktemp("report") / "out")


def embedded_images(html: str) -> list[bytes]:
    return [
        base64.b64decode(m)
        for m in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    ]


def test_report_writes_html_and_every_figure(full: ReportResult) -> None:
    result, out = full, full.html.parent
    assert result.html == out / "report.html" and result.runs == 7 and result.failed == 1
    stems = {p.stem for p in result.files}
    # breakdown, throughput, speedup, memory, operators, every run's resources in one
    assert {"breakdown", "throughput", "speedup", "memory", "operators", "resources"} == stems
    for stem in stems:
        assert (out / f"{stem}.png").read_bytes().startswith(PNG_MAGIC)
        assert "<svg" in (out / f"{stem}.svg").read_text()[:2000]
    html = result.html.read_text()
    images = embedded_images(html)
    assert len(images) == len(stems) == len(result.files) // 2
    assert all(image.startswith(PNG_MAGIC) for image in images)
    assert 'src="http' not in html and "<script" not in html  # self-contained, no scripts
    for stem in stems:
        assert f'<figure id="{stem}">' in html


def test_report_lists_runs_summary_and_failures(full: ReportResult) -> None:
    html = full.html.read_text()
    every_run = html.split('<section id="runs">')[1]
    assert every_run.count("<tr") == 1 + 7  # header + every selected run
    assert 'class="failed"' in html and "killed by SIGKILL" in html
    assert "highest throughput" in html
    assert "aten::convolution_backward" in html  # summary drills into operators
    assert "oversubscribed" in html


def test_filters_select_runs(db: Path, tmp_path: Path) -> None:
    result = build_report(db, tmp_path / "out", Selection(models=["lenet5"], strategies=["ddp"]))
    assert result.runs == 2 and result.failed == 0
    assert "operators" in {p.stem for p in result.files}  # the ddp x2 run is profiled
    html = result.html.read_text()
    assert "resnet18" not in html.split('<section id="runs">')[1]


def test_the_page_answers_in_order_and_ranks_the_configurations(full: ReportResult) -> None:
    """Sections follow a reader's questions; the fastest configuration of each workload
    leads its ranking."""
    html = full.html.read_text()
    order = re.findall(r'<section id="([a-z]+)">', html)
    assert order == ["fastest", "findings", "scaling", "time", "why", "resources", "runs"]
    fastest = html.split('<section id="fastest">')[1].split("</section>")[0]
    first_rows = re.findall(r'<tr class="best"><td>1</td><td>([^<]+)</td>', fastest)
    assert len(first_rows) == fastest.count("<h3>")  # one leader per workload


def test_empty_selection_is_a_user_error(db: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no runs match --model vgg16"):
        build_report(db, tmp_path / "out", Selection(models=["vgg16"]))
    with pytest.raises(UserError, match="no runs match --dataset cifar10"):
        build_report(db, tmp_path / "out", Selection(datasets=["cifar10"]))
    assert not (tmp_path / "out").exists()  # nothing written for an empty selection


def test_only_failed_runs_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "failed.db"
    store = open_store(path)
    store.insert(row(1, "lenet5", "ddp", 2, status="failed"))
    store.close()
    with pytest.raises(UserError, match="none of the 1 runs"):
        build_report(path, tmp_path / "out")


def test_cli_report(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-out"
    assert (
        main(
            [
                "report",
                "--db",
                str(db),
                "--out",
                str(out),
                "--model",
                "lenet5,vgg16",
                "--dataset",
                "synthetic",
                "--strategy",
                "sequential",
            ]
        )
        == 0
    )
    assert "report.html" in capsys.readouterr().out
    assert (out / "report.html").is_file() and (out / "breakdown.svg").is_file()
    assert main(["report", "--db", str(db), "--out", str(out), "--strategy", "gpipe"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no runs match --strategy gpipe" in err
    assert main(["report", "--db", str(tmp_path / "none.db"), "--out", str(out)]) == 2
    assert "no results database" in capsys.readouterr().err


def test_figure_helpers() -> None:
    rows = [row(1, "lenet5", "ddp", 2), row(2, "lenet5", "ddp", 2), row(3, "lenet5", "ddp", 1)]
    lines = latest_by_workers(rows)
    assert list(lines) == ["ddp"] and lines["ddp"][2].run_id == rows[1].run_id
    # central and sharded servers, and the semaphore, are lines of their own
    servers = [
        row(4, "lenet5", "ps-async", 2, config={"servers": "central"}),
        row(5, "lenet5", "ps-async", 2, config={"servers": "sharded"}),
        row(6, "lenet5", "ps-sync-join", 2, config={"servers": "central", "ps_semaphore": True}),
    ]
    assert list(latest_by_workers(servers)) == [
        "ps-async",
        "ps-async sharded",
        "ps-sync-join semaphore",
    ]
    assert phases_present(rows) == ["data", "forward", "backward", "comm", "update"]
    profiled = row(1, "resnet18", "sequential", 1, operators=operators(1.0))
    assert operator_table(profiled)["backward: aten::add_"] == 0.01


def test_breakdown_hatches_phases_a_framework_could_not_separate() -> None:
    from matplotlib.patches import Rectangle

    from distbench.report.figures import UNSEPARATED_LABEL, breakdown_figure

    tf = row(
        1,
        "lenet5",
        "allreduce",
        2,
        framework="tensorflow",
        breakdown={"data": 0.001, "backward": 0.03, "comm": 0.002, "update": 0.001},
        extra={"unseparated_phases": {"backward": ["forward", "backward"]}},
    )
    torch = row(2, "lenet5", "ddp", 2)
    figure = breakdown_figure([tf, torch]).figure
    hatched = [
        p for ax in figure.axes for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch()
    ]
    assert len(hatched) == 1 and hatched[0].get_height() == pytest.approx(30.0)  # ms
    labels = [t.get_text() for legend in figure.legends for t in legend.get_texts()]
    assert labels[-1] == UNSEPARATED_LABEL
    plain = breakdown_figure([torch]).figure
    assert not [p for ax in plain.axes for p in ax.patches if p.get_hatch()]


def test_speedup_figure_draws_each_engines_prediction_beside_the_measured_points() -> None:
    rows = [
        row(1, "lenet5", "ddp", 1, speedup=1.0),
        row(2, "lenet5", "ddp", 2, speedup=1.8, config={"compute": "profile"}),
    ]
    predictions = {rows[0].run_id: {"formulas": 1.0}, rows[1].run_id: {"formulas": 1.9}}
    predictions[rows[1].run_id]["simulator"] = 1.85
    ax = speedup_figure(rows, predictions).figure.axes[0]
    by_label = {line.get_label(): line for line in ax.lines}
    assert np.asarray(by_label["ddp: formulas"].get_ydata()).tolist() == [1.0, 1.9]
    assert np.asarray(by_label["ddp: simulator"].get_xdata()).tolist() == [2]
    hollow = [line for line in ax.lines if line.get_markerfacecolor() == "white"]
    assert len(hollow) == 1  # the emulated point
    assert np.asarray(hollow[0].get_xdata()).tolist() == [2]


def test_predicted_speedups_come_from_the_stored_profile_alone(tmp_path: Path) -> None:
    from test_validate import make_profile

    from distbench.config import RunConfig
    from distbench.profiling.profiles import save_profile
    from distbench.workflows.validate import predicted_speedups

    path = tmp_path / "p.db"
    save_profile(path, make_profile(model="lenet5"))
    configs = [RunConfig(model="lenet5", strategy=s, workers=n) for s, n in
               (("sequential", 1), ("ps-sync-join", 2))]  # fmt: skip
    rows = [
        row(i + 1, "lenet5", cfg.strategy, cfg.workers, config=cfg.to_dict())
        for i, cfg in enumerate(configs)
    ]
    store = open_store(path)
    for r in rows:
        store.insert(r)
    store.close()
    predicted = predicted_speedups(str(path), rows)
    assert set(predicted[rows[1].run_id]) == {"formulas", "simulator"}
    assert all(0 < s < 2 for s in predicted[rows[1].run_id].values())  # two transfers a step
    assert predicted_speedups(str(tmp_path / "none.db"), rows) == {}
