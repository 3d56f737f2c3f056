"""Bad-input campaign: mistaken command lines across every subcommand.

Each must exit with code 2 and one line on stderr naming the problem, with no traceback and
no ``ok`` run stored. The command lines run in-process (``cli.main.main``), so that the
campaign costs seconds; ``test_cli_errors.py`` runs a few of the same in a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from distbench.cli.main import main
from distbench.store import open_store
from distbench.store.result import RunResult

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

R = ["run", "--model", "lenet5"]
CASES = [
    # run: names
    (["run", "--model", "nosuchnet"], "unknown model 'nosuchnet'"),
    ([*R, "--strategy", "nosuch"], "unknown strategy 'nosuch'"),
    ([*R, "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    ([*R, "--framework", "jax"], "invalid choice: 'jax'"),
    ([*R, "--device", "tpu"], "invalid choice: 'tpu'"),
    ([*R, "--servers", "everywhere", "--strategy", "ps-async", "--workers", "2"], "invalid choice"),
    ([*R, "--partition", "random"], "invalid choice: 'random'"),
    ([*R, "--framework", "tensorflow", "--strategy", "ddp"], "has no strategy 'ddp'"),
    # trace
    (["trace", "nosuch"], "no run 'nosuch'"),
    (["trace", "x", "--round", "two"], "invalid int value: 'two'"),
    # run: the SLURM launcher
    ([*R, "--launcher", "pbs"], "invalid choice: 'pbs'"),
    ([*R, "--slurm-partition", "gpu"], "--slurm-partition is for --launcher slurm"),
    ([*R, "--dry-run"], "--dry-run is for --launcher slurm"),
    ([*R, "--launcher", "slurm", "--master-addr", "10.0.0.1"], "chosen by SLURM"),
    (
        [*R, "--launcher", "slurm", "--hosts", "2", "--workers", "2", "--strategy", "ddp"],
        "not with SLURM",
    ),
    # run: sizes
    ([*R, "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ([*R, "--batch-size", "-4"], "--batch-size must be at least 1, got -4"),
    ([*R, "--batch-size", "lots"], "invalid int value: 'lots'"),
    ([*R, "--steps", "0"], "--steps must be at least 1, got 0"),
    ([*R, "--warmup", "-1"], "--warmup must be at least 0, got -1"),
    ([*R, "--strategy", "ddp", "--workers", "0"], "--workers must be at least 1, got 0"),
    ([*R, "--strategy", "ddp", "--workers", "-1"], "--workers must be at least 1, got -1"),
    ([*R, "--strategy", "sequential", "--workers", "0"], "--workers must be at least 1, got 0"),
    ([*R, "--workers", "two"], "expected comma-separated integers"),
    ([*R, "--threads", "0"], "--threads must be at least 1, got 0"),
    ([*R, "--lr", "0"], "--lr must be positive, got 0"),
    ([*R, "--lr", "-0.1"], "--lr must be positive"),
    ([*R, "--timeout", "0"], "--timeout must be positive"),
    ([*R, "--input-size", "0"], "--input-size must be at least 1, got 0"),
    ([*R, "--num-classes", "1"], "--num-classes must be at least 2, got 1"),
    (
        [*R, "--microbatches", "0", "--strategy", "pipeline-gpipe", "--workers", "2"],
        "--microbatches must be at least 1",
    ),
    # run: training to a target
    ([*R, "--target-accuracy", "0.8"], "has random labels"),
    (
        [*R, "--dataset", "digits", "--target-accuracy", "1.5"],
        "--target-accuracy must be at most 1",
    ),
    ([*R, "--dataset", "digits", "--target-accuracy", "0"], "--target-accuracy must be positive"),
    (
        [*R, "--dataset", "digits", "--target-accuracy", "0.8", "--eval-every", "0"],
        "--eval-every must be at least 1",
    ),
    ([*R, "--dataset", "digits", "--epochs", "0"], "--epochs must be positive"),
    ([*R, "--dataset", "digits", "--epochs", "2", "--compute", "0.01"], "needs --compute real"),
    ([*R, "--seeds", "1,1"], "--seeds repeats a seed"),
    ([*R, "--seeds", "1,2", "--seed", "3"], "either --seed or --seeds"),
    ([*R, "--seeds", "one"], "expected comma-separated integers"),
    # run: impossible combinations
    (
        [*R, "--strategy", "ps-sync-split", "--workers", "3", "--batch-size", "8"],
        "must divide evenly",
    ),
    (
        [
            *R,
            "--strategy",
            "pipeline-gpipe",
            "--workers",
            "2",
            "--batch-size",
            "10",
            "--microbatches",
            "4",
        ],
        "must be divisible by --microbatches 4",
    ),
    ([*R, "--strategy", "model-parallel", "--workers", "9"], "has only"),
    ([*R, "--strategy", "ddp", "--partition", "profiled"], "--partition does not apply to ddp"),
    ([*R, "--strategy", "ddp", "--servers", "sharded"], "--servers does not apply to ddp"),
    ([*R, "--strategy", "ddp", "--ps-semaphore"], "--ps-semaphore does not apply to ddp"),
    (
        [*R, "--strategy", "ddp", "--workers", "3", "--nnodes", "2"],
        "must divide evenly over --nnodes 2",
    ),
    (
        [*R, "--node-rank", "2", "--nnodes", "2", "--strategy", "ddp", "--workers", "2"],
        "--node-rank must be in 0..1, got 2",
    ),
    ([*R, "--nnodes", "0"], "--nnodes must be at least 1, got 0"),
    ([*R, "--hosts", "0"], "--hosts must be at least 1, got 0"),
    ([*R, "--strategy", "ddp", "--workers", "4", "--hosts", "3"], "divide evenly over --hosts 3"),
    (
        [*R, "--strategy", "ddp", "--workers", "2", "--nnodes", "2", "--hosts", "2"],
        "use one or the other",
    ),
    (
        [
            *R,
            "--framework",
            "tensorflow",
            "--strategy",
            "ps-async",
            "--workers",
            "2",
            "--profile-ops",
        ],
        "--profile-ops is not available",
    ),
    ([*R, "--device", "cuda"], "no CUDA device"),
    (
        [*R, "--strategy", "ddp", "--workers", "2", "--vertical-sync"],
        "--vertical-sync does not apply to ddp: it is read by pipeline-pipedream",
    ),
    (
        [*R, "--strategy", "pipeline-pipedream", "--workers", "9"],
        "9 stages (--workers) but model 'lenet5' has only 7 block(s)",
    ),
    (
        [*R, "--strategy", "pipeline-pipedream", "--workers", "2", "--batch-size", "30"],
        "--batch-size 30 must be divisible by --microbatches 4",
    ),
    (
        [
            *R,
            "--strategy",
            "pipeline-pipedream",
            "--workers",
            "8",
            "--microbatches",
            "1",
            "--batch-size",
            "8",
            "--partition",
            "profiled",
        ],
        "cannot be planned as stages of at most one per block, each stage's replicas dividing",
    ),
    (
        [
            *R,
            "--strategy",
            "pipeline-gpipe",
            "--workers",
            "9",
            "--partition",
            "profiled",
        ],
        "cannot be planned as copies of a pipeline",
    ),
    (
        [
            *R,
            "--strategy",
            "pipeline-pipedream",
            "--workers",
            "2",
            "--dataset",
            "digits",
            "--target-accuracy",
            "0.8",
            "--compute",
            "0.1",
        ],
        "--target-accuracy trains the model: it needs --compute real",
    ),
    # run: network specs
    ([*R, "--network", "rate=1gbit"], "unknown key"),
    ([*R, "--network", "bandwidth=fast"], "bad rate 'fast'"),
    ([*R, "--network", "bandwidth=100mbit,burst=-1"], "bad size '-1'"),
    ([*R, "--network", "bandwidth=100mbit,mtu=10"], "mtu"),
    # run: data files
    ([*R, "--dataset", "mnist", "--data-dir", "/nonexistent/mnist"], "/nonexistent/mnist"),
    ([*R, "--dataset", "cifar10"], "--data-dir"),
    ([*R, "--dataset", "mnist", "--data-dir", "{tmp}/emptydir"], "emptydir"),
    ([*R, "--dataset", "mnist", "--data-dir", "{tmp}/mnist"], "mnist"),
    ([*R, "--dataset", "cifar10", "--data-dir", "{tmp}/cifar"], "cifar"),
    ([*R, "--dataset", "imagefolder", "--data-dir", "{tmp}/emptydir"], "emptydir"),
    # run: user models
    (["run", "--model", "{tmp}/missing.py:Net"], "missing.py"),
    (["run", "--model", "{tmp}/syntax_model.py:Net"], "syntax_model.py"),
    (["run", "--model", "{tmp}/broken_model.py:Nope"], "Nope"),
    (["run", "--model", "no.such.module:Net"], "no.such.module"),
    # run: suites and stores
    (["run", "--suite", "{tmp}/missing.toml"], "suite file not found"),
    (["run", "--suite", "{tmp}/bad.toml"], "not valid TOML"),
    (["run", "--suite", "{tmp}/unknown.toml"], "unknown setting(s): colour"),
    (["run", "--suite", "{tmp}/nomodels.toml"], "needs a 'models' list"),
    ([*R, "--db", "/nonexistent/dir/r.db"], "/nonexistent/dir"),
    ([*R, "--db", "{tmp}/emptydir"], "is a directory"),
    ([*R, "--db", "{tmp}/corrupt.db"], "corrupt.db"),
    ([*R, "--nodefile", "{tmp}/missing_nodes.txt"], "missing_nodes.txt"),
    ([*R, "--nodefile", "{tmp}/empty_nodes.txt"], "empty_nodes.txt"),
    ([*R, "--master-port", "70000"], "--master-port must be at most 65535, got 70000"),
    ([*R, "--master-port", "0"], "--master-port must be at least 1, got 0"),
    # run: measurement
    ([*R, "--rounds", "0"], "--rounds must be at least 1, got 0"),
    ([*R, "--rounds", "-3"], "--rounds must be at least 1, got -3"),
    ([*R, "--precision", "0"], "--precision must be a percentage in (0, 100), got 0"),
    ([*R, "--precision", "150%"], "--precision must be a percentage in (0, 100), got 150"),
    ([*R, "--precision", "tight"], "expected a percentage such as 3%, got 'tight'"),
    ([*R, "--budget", "0", "--precision", "3%"], "--budget must be positive"),
    # run: emulated compute
    ([*R, "--compute", "0"], "--compute must be real, profile or a positive number"),
    ([*R, "--compute", "-0.5"], "--compute must be real, profile or a positive number"),
    ([*R, "--compute", "fast"], "--compute must be real, profile or a positive number"),
    ([*R, "--compute", "profile"], "--compute profile needs a stored profile of --model lenet5"),
    ([*R, "--compute-profile", "2"], "--compute-profile needs --compute profile"),
    (
        [*R, "--framework", "tensorflow", "--strategy", "allreduce", "--compute", "0.1"],
        "--compute 0.1 does not apply to allreduce (tensorflow)",
    ),
    ([*R, "--compute", "0.1", "--profile-ops"], "--profile-ops profiles real operators"),
    (
        ["run", "--model", "vgg16", "--strategy", "ddp", "--workers", "200", "--compute", "1"],
        "use fewer --workers",
    ),
    # results
    (["results", "--db", "{tmp}/missing.db"], "no results database"),
    (["results", "--compare", "{tmp}/lenet.db", "{tmp}/alexnet.db"], "share no configuration"),
    (["results", "--compare", "{tmp}/empty.db", "{tmp}/lenet.db"], "no ok run stored"),
    (["results", "--compare", "{tmp}/nothere.db", "{tmp}/lenet.db"], "neither a results"),
    (
        ["results", "--db", "{tmp}/lenet.db", "--compare", "commit=0000", "{tmp}/lenet.db"],
        "no stored run matches",
    ),
    (["results", "--fail-above", "5%"], "--fail-above needs --compare A B"),
    (
        ["results", "--compare", "{tmp}/lenet.db", "{tmp}/lenet.db", "--fail-above", "0"],
        "--fail-above must be a percentage in (0, 100)",
    ),
    (["results", "--db", "{tmp}/corrupt.db"], "corrupt.db"),
    (["results", "--format", "xml"], "invalid choice: 'xml'"),
    (
        ["results", "--db", "{tmp}/lenet.db", "--export", "mlflow", "{tmp}/out"],
        "unknown tracker 'mlflow' (known: tensorboard)",
    ),
    (
        ["results", "--db", "{tmp}/lenet.db", "--model", "vgg", "--export", "tensorboard", "x"],
        "no runs match the filters",
    ),
    # list
    (["list", "nothings"], "invalid choice"),
    (["list", "models", "--blocks", "nosuchnet"], "unknown model"),
    # estimate
    (["estimate", "--t-grad", "-1", "--t-comm", "0.1"], "t_grad"),
    (["estimate", "--t-grad", "1"], "--t-comm"),
    (["estimate", "--t-grad", "1", "--t-comm", "0.1", "--workers", "0"], "--workers must be >= 1"),
    (["estimate", "--t-grad", "1", "--t-comm", "0.1", "--server", "nowhere"], "invalid choice"),
    (["estimate", "--t-grad", "1", "--t-comm", "0.1", "--type", "magic"], "invalid choice"),
    (["estimate", "--t-grad", "1", "--t-comm", "0.1", "--batches", "0"], "batches"),
    (["estimate", "--type", "pipeline", "--t-grad", "1"], "--microbatches"),
    (["estimate", "--model", "lenet5", "--db", "{tmp}/missing.db"], "missing.db"),
    # profile
    (["profile", "--model", "nosuchnet"], "unknown model"),
    (["profile", "--model", "lenet5", "--rounds", "0"], "--rounds must be at least 1, got 0"),
    (["profile", "--model", "lenet5", "--batch-size", "0"], "--batch-size must be at least 1"),
    (
        ["profile", "--model", "lenet5", "--dataset", "mnist", "--data-dir", "/nonexistent"],
        "/nonexistent",
    ),
    (["profile", "--model", "lenet5", "--network", "rate=1"], "unknown key"),
    # validate
    (["validate", "--model", "lenet5", "--rounds", "0"], "--rounds must be at least 1"),
    (["validate", "--model", "nosuchnet"], "unknown model"),
    (["validate", "--suite", "{tmp}/bad.toml"], "not valid TOML"),
    # explain
    (["explain", "aaa", "bbb", "--db", "{tmp}/missing.db"], "missing.db"),
    (["explain", "zzzzzz", "yyyyyy", "--db", "{tmp}/empty.db"], "no run 'zzzzzz'"),
    # report
    (["report", "--db", "{tmp}/missing.db", "--out", "{tmp}/rep"], "missing.db"),
    (["report", "--db", "{tmp}/empty.db", "--out", "{tmp}/rep"], "no runs"),
    # doctor
    (["doctor", "--rounds", "2"], "--rounds must be at least 3"),
    (["reproduce", "thesis", "--models", "alexnet"], "unknown thesis network 'alexnet'"),
    (["reproduce", "thesis", "--modes", "fast"], "unknown mode 'fast'"),
    (["reproduce", "thesis", "--servers", "cloud"], "unknown server 'cloud'"),
    (["reproduce", "thesis", "--workers", "0"], "--workers must be at least 1, got 0"),
    (["reproduce", "paper"], "invalid choice: 'paper'"),
    (["doctor", "--rounds", "many"], "invalid int value: 'many'"),
    # env / compare
    (["env", "install", "cobol"], "invalid choice"),
    (["compare", "--model", "nosuchnet"], "unknown model"),
    (["compare", "--model", "lenet5", "--frameworks", "torch,cobol"], "unknown framework 'cobol'"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Broken inputs of every kind, written in their real formats."""
    tmp = tmp_path_factory.mktemp("bad-inputs")
    (tmp / "bad.toml").write_text("models = [\n")
    (tmp / "unknown.toml").write_text(
        'models = ["lenet5"]\nstrategies = ["ddp"]\ncolour = "blue"\n'
    )
    (tmp / "nomodels.toml").write_text('strategies = ["ddp"]\n')
    (tmp / "corrupt.db").write_text("not a database, just text " * 40)
    (tmp / "emptydir").mkdir()
    (tmp / "mnist").mkdir()
    (tmp / "mnist" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x07" * 96)
    (tmp / "cifar").mkdir()
    (tmp / "cifar" / "data_batch_1").write_bytes(b"not a pickle")
    (tmp / "broken_model.py").write_text("import torch\nclass Net(torch.nn.Module):\n    pass\n")
    (tmp / "syntax_model.py").write_text("def f(:\n")
    (tmp / "empty_nodes.txt").write_text("# no address\n")
    open_store(tmp / "empty.db").close()
    for model in ("lenet", "alexnet"):  # two stores whose runs share no configuration
        store = open_store(tmp / f"{model}.db")
        store.insert(one_ok_run(model))
        store.close()
    return tmp


def one_ok_run(model: str) -> RunResult:
    return RunResult(
        run_id=f"{model}-1",
        status="ok",
        created_at="2026-12-02T00:00:00",
        model=model,
        dataset="synthetic",
        strategy="sequential",
        framework="torch",
        workers=1,
        global_batch=32,
        throughput_median=100.0,
        config={"model": model, "strategy": "sequential"},
        env={"distbench_commit": "abc123", "hostname": "box"},
    )


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    """``main`` installs SIGTERM/SIGHUP handlers; the test process keeps its own."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def run_cli(argv: list[str]) -> tuple[object, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code: object = main(argv)
        except SystemExit as exc:  # argparse's own errors exit 2 after one usage line
            code = exc.code
    return code, err.getvalue()


def ok_rows(db: Path) -> int:
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(db) as connection:
            found = connection.execute("SELECT count(*) FROM runs WHERE status = 'ok'")
            return int(found.fetchone()[0])
    except sqlite3.DatabaseError:
        return 0  # the corrupt store of a case


def test_the_campaign_covers_every_subcommand() -> None:
    assert len(CASES) >= 60
    commands = {args[0] for args, _ in CASES}
    assert commands == {
        "run",
        "results",
        "list",
        "estimate",
        "profile",
        "validate",
        "explain",
        "report",
        "env",
        "compare",
        "doctor",
        "reproduce",
        "trace",
    }


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_a_mistaken_command_line_is_one_line_and_exit_2(
    files: Path, keep_signal_handlers: None, args: list[str], expected: str
) -> None:
    argv = [a.replace("{tmp}", str(files)) for a in args]
    db = files / "campaign.db"
    if "--db" not in argv and argv[0] not in ("list", "env", "compare", "doctor"):
        argv += ["--db", str(db)]
    code, stderr = run_cli(argv)
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1, stderr
    assert expected in lines[0]
    assert "Traceback" not in stderr
    assert ok_rows(db) == 0


def env_install(envs: str, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DISTBENCH_ENVS": envs, **extra_env}
    return subprocess.run(
        [sys.executable, "-m", "distbench.cli.main", "env", "install", "mxnet"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_env_install_into_an_unwritable_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = env_install(str(blocker / "envs"), {})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"distbench env: error: cannot write the environment directory {blocker}/envs/mxnet "
        "(Not a directory); set DISTBENCH_ENVS to a writable directory"
    ]


def test_env_install_without_the_package_index_fails_and_marks_nothing_installed(
    tmp_path: Path,
) -> None:
    # pip with no configuration and an index on a closed local port: nothing is reachable
    unreachable = {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "3",
    }
    done = env_install(str(tmp_path / "envs"), unreachable)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("distbench env: error:") and "package index" in last, last
    listed = subprocess.run(
        [sys.executable, "-m", "distbench.cli.main", "env", "list", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "DISTBENCH_ENVS": str(tmp_path / "envs")},
        check=True,
    )
    mxnet = next(row for row in json.loads(listed.stdout) if row["name"] == "mxnet")
    assert mxnet["installed"] is False


def test_the_slurm_launcher_without_sbatch_is_one_line_and_exit_2(
    files: Path, keep_signal_handlers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(files / "no-slurm-here"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    db = files / "slurm.db"
    code, stderr = run_cli([*R, "--launcher", "slurm", "--db", str(db)])
    assert code == 2, stderr
    assert stderr.strip().splitlines() == [
        "distbench run: error: --launcher slurm needs `sbatch` on PATH (run on a SLURM "
        "login node, or install SLURM's client commands)"
    ]
    assert not db.exists() or ok_rows(db) == 0
    assert not list((files / "distbench-runs").glob("slurm-*"))
