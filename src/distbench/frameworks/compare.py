"""The comparator of the source study: do the frameworks compute the same thing?

Start at ``compare_frameworks``. PyTorch builds the zoo model (seeded) and is the reference:
its initial weights go to one ``.npz``, converted to each framework's layout
(``weights.py``), and each framework, in its own environment, loads them, computes the loss
of the same batch and trains K plain SGD steps on the same batches; its weights come back
as ``.npz`` and are converted back to PyTorch's layout. Three checks, per framework:

1. **initial weights**: every PyTorch weight exists in the framework with the same shape
   (after layout conversion) and the same values, and the framework has no unmatched weight;
2. **loss**: the loss of batch 0 in inference mode (running statistics) and in training
   mode (batch statistics; the first step's loss), within a relative tolerance;
3. **weights after K steps**: every weight and running statistic within
   ``atol + rtol x max|reference|`` of PyTorch's, per array.

Each check reports its tolerance, the largest deviation and the array it was found in; a
failing check names the layer. The check functions are pure (NumPy arrays in, dataclasses
out) so they are tested on synthetic arrays; only ``compare_frameworks`` runs programs.
Dropout is switched off for the comparison: its random masks cannot be shared.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distbench.errors import UserError
from distbench.frameworks import get_adapter
from distbench.frameworks.envs import require_env
from distbench.frameworks.weights import (
    Arrays,
    batch_to_framework,
    from_framework,
    load_npz,
    save_npz,
    spec_keys,
    to_framework,
    to_torch_convention,
)

REFERENCE = "torch"


@dataclass(frozen=True)
class Tolerances:
    """How close is close enough, per check (docs/frameworks.md says why)."""

    init_atol: float = 0.0  # loading is a copy: exact
    loss_rtol_float32: float = 1e-4  # float32 sums in another order
    loss_rtol_float64: float = 1e-9
    # Training is compared in float64: in float32, an activation within rounding of zero
    # can take the other side of a ReLU in one framework, which changes that gradient
    # element outright, so float32 weights drift apart for reasons that are not bugs.
    trained_atol: float = 1e-9
    trained_rtol: float = 1e-6  # relative to the largest magnitude in the array
    # The float32 training drift, reported but not judged.
    drift_atol: float = 1e-5
    drift_rtol: float = 1e-3


@dataclass
class Deviation:
    """One array (or loss) compared: where, how far off, against what tolerance."""

    name: str
    max_abs_diff: float
    tolerance: float
    passed: bool
    shape: list[int] | None = None
    native_shape: list[int] | None = None
    reference_scale: float | None = None  # max |reference|
    moved: float | None = None  # max |final - initial| of the reference: did it train?
    note: str = ""


@dataclass
class CheckResult:
    """One of the three checks for one framework."""

    check: str
    framework: str
    passed: bool
    tolerance: str
    max_deviation: float
    worst: str | None
    deviations: list[Deviation] = field(default_factory=list)
    judged: bool = True  # False: reported for information, never fails the comparison

    @property
    def failures(self) -> list[Deviation]:
        return [d for d in self.deviations if not d.passed]

    def summary(self) -> str:
        status = ("PASS" if self.passed else "FAIL") if self.judged else "INFO"
        where = f" at {self.worst}" if self.worst else ""
        line = (
            f"{status} {self.framework}: {self.check}: largest deviation "
            f"{self.max_deviation:.3g}{where} (tolerance {self.tolerance})"
        )
        if not self.passed and self.judged:
            names = ", ".join(
                f"{d.name}{' (' + d.note + ')' if d.note else ''}" for d in self.failures[:5]
            )
            line += f"; failing: {names}"
        return line


@dataclass
class FrameworkResult:
    framework: str
    versions: dict[str, str]
    losses: list[float]
    eval_loss: float
    seconds: float
    checks: list[CheckResult]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks if c.judged)


@dataclass
class CompareReport:
    """Everything ``distbench compare`` found, ready for a table or JSON."""

    model: str
    reference: str
    input_shape: list[int]
    num_classes: int
    batch_size: int
    steps: int
    lr: float
    seed: int
    tolerances: Tolerances
    reference_losses: list[float]
    reference_eval_loss: float
    results: list[FrameworkResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data


# ------------------------------------------------------------------------------ pure checks


def _deviation(
    name: str,
    ref: np.ndarray,
    other: np.ndarray | None,
    atol: float,
    rtol: float,
    native: list[int] | None,
    initial: np.ndarray | None,
) -> Deviation:
    shape = list(ref.shape)
    if other is None:
        return Deviation(name, float("inf"), atol, False, shape, None, note="missing")
    if other.shape != ref.shape:
        return Deviation(
            name,
            float("inf"),
            atol,
            False,
            shape,
            native or list(other.shape),
            note=f"shape {list(other.shape)} != {shape}",
        )
    ref64, other64 = ref.astype(np.float64), other.astype(np.float64)
    scale = float(np.max(np.abs(ref64))) if ref.size else 0.0
    diff = float(np.max(np.abs(ref64 - other64))) if ref.size else 0.0
    if not np.isfinite(other64).all():
        diff = float("inf")
    tolerance = atol + rtol * scale
    moved = (
        float(np.max(np.abs(ref64 - initial.astype(np.float64))))
        if initial is not None and initial.shape == ref.shape and ref.size
        else None
    )
    return Deviation(name, diff, tolerance, diff <= tolerance, shape, native, scale, moved)


def compare_weights(
    check: str,
    framework: str,
    reference: Mapping[str, np.ndarray],
    other: Mapping[str, np.ndarray],
    atol: float,
    rtol: float = 0.0,
    native_shapes: Mapping[str, list[int]] | None = None,
    initial: Mapping[str, np.ndarray] | None = None,
    unmatched: list[str] | None = None,
) -> CheckResult:
    """Every reference array against the framework's, in reference order.

    ``unmatched``: weights the framework has that no reference array maps to; each one
    fails the check (the models would differ).
    """
    natives = native_shapes or {}
    deviations = [
        _deviation(key, ref, other.get(key), atol, rtol, natives.get(key), (initial or {}).get(key))
        for key, ref in reference.items()
    ]
    deviations += [
        Deviation(name, float("inf"), atol, False, note="no PyTorch counterpart")
        for name in unmatched or []
    ]
    worst = max(deviations, key=lambda d: d.max_abs_diff, default=None)
    tolerance = f"|diff| <= {atol:g}" + (f" + {rtol:g} x max|ref|" if rtol else "")
    return CheckResult(
        check,
        framework,
        all(d.passed for d in deviations),
        tolerance,
        worst.max_abs_diff if worst else 0.0,
        worst.name if worst else None,
        deviations,
    )


def compare_losses(
    framework: str, entries: list[tuple[str, float, float | None, float]]
) -> CheckResult:
    """Losses as ``(name, reference, framework's value, relative tolerance)``."""
    deviations = []
    for name, ref, value, rtol in entries:
        tolerance = rtol * max(abs(ref), 1e-12)
        if value is None or not np.isfinite(value):
            deviations.append(
                Deviation(
                    name,
                    float("inf"),
                    tolerance,
                    False,
                    note="missing" if value is None else "not finite",
                )
            )
            continue
        diff = abs(value - ref)
        deviations.append(
            Deviation(name, diff, tolerance, diff <= tolerance, reference_scale=abs(ref))
        )
    worst = max(deviations, key=lambda d: d.max_abs_diff / max(d.tolerance, 1e-30), default=None)
    rtols = sorted({f"{e[3]:g}" for e in entries})
    return CheckResult(
        "same loss on the same batch",
        framework,
        all(d.passed for d in deviations),
        f"|diff| <= {' or '.join(rtols)} x |loss| (by precision)",
        worst.max_abs_diff if worst else 0.0,
        worst.name if worst else None,
        deviations,
    )


# ------------------------------------------------------------------------------ the reference


@dataclass
class TrainingRun:
    """One precision's results: weights as loaded and after K steps, losses."""

    loaded: Arrays
    final: Arrays
    losses: list[float]
    eval_loss: float
    native_shapes: dict[str, list[int]] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)


@dataclass
class Reference:
    """PyTorch's side: architecture, initial weights, the batches, a run per precision."""

    spec: dict[str, Any]
    initial: Arrays
    x: np.ndarray  # (steps, batch, C, H, W) float32
    y: np.ndarray  # (steps, batch)
    runs: dict[str, TrainingRun]


def make_batches(
    steps: int, batch: int, shape: list[int], num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``i`` depends on ``seed`` and ``i`` only (not on how many steps are asked)."""
    xs, ys = [], []
    for i in range(steps):
        rng = np.random.default_rng([seed, i])
        xs.append(rng.uniform(-1.0, 1.0, size=(batch, *shape)).astype(np.float32))
        ys.append(rng.integers(0, num_classes, size=batch).astype(np.int64))
    return np.stack(xs), np.stack(ys)


def _torch_run(
    model: Any,
    keys: list[str],
    x: np.ndarray,
    y: np.ndarray,
    lr: float,
    momentum: float,
    dtype: Any,
) -> TrainingRun:
    import torch
    from torch import nn

    def snapshot() -> Arrays:
        state = model.state_dict()
        return {k: state[k].detach().numpy().copy() for k in keys}

    model = model.to(dtype)
    loaded = snapshot()
    loss_fn = nn.CrossEntropyLoss()
    model.eval()
    with torch.no_grad():
        eval_loss = float(loss_fn(model(torch.from_numpy(x[0]).to(dtype)), torch.from_numpy(y[0])))
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses = []
    for i in range(x.shape[0]):
        loss = loss_fn(model(torch.from_numpy(x[i]).to(dtype)), torch.from_numpy(y[i]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return TrainingRun(loaded, snapshot(), losses, eval_loss)


def run_reference(
    model_name: str,
    batch: int,
    steps: int,
    lr: float,
    seed: int,
    num_classes: int,
    input_size: int | None,
    momentum: float = 0.0,
    precisions: tuple[str, ...] = ("float32", "float64"),
) -> Reference:
    """Build the zoo model as the PyTorch strategies do and train it K steps per precision."""
    import copy

    import torch
    from torch import nn

    from distbench.frameworks.spec import export_spec
    from distbench.models import build_model, model_defaults

    size, channels = model_defaults(model_name)
    shape = [channels, input_size or size, input_size or size]
    torch.manual_seed(seed)
    model = build_model(model_name, num_classes, shape[1], shape[0])
    for module in model.modules():  # random masks cannot be shared across frameworks
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    spec = export_spec(model, (shape[0], shape[1], shape[2]), num_classes)
    keys = spec_keys(spec)
    state = model.state_dict()
    initial = {k: state[k].detach().numpy().copy() for k in keys}
    x, y = make_batches(steps, batch, shape, num_classes, seed)
    runs = {
        p: _torch_run(copy.deepcopy(model), keys, x, y, lr, momentum, getattr(torch, p))
        for p in precisions
    }
    return Reference(spec, initial, x, y, runs)


# ------------------------------------------------------------------------------ running a framework


@dataclass
class FrameworkRun:
    """What a framework's compare job sent back, already in PyTorch's layout."""

    runs: dict[str, TrainingRun]
    versions: dict[str, str]
    seconds: float


def run_framework(
    framework: str,
    ref: Reference,
    workdir: Path,
    lr: float,
    momentum: float,
    timeout: float,
    threads: int | None = None,
) -> FrameworkRun:
    """Run the framework's worker in ``compare`` mode in its own environment."""
    adapter = get_adapter(framework)
    python = require_env(adapter.env)
    folder = workdir / framework
    folder.mkdir(parents=True, exist_ok=True)
    save_npz(folder / "init.npz", to_framework(framework, ref.spec, ref.initial))
    save_npz(folder / "batches.npz", {"x": batch_to_framework(framework, ref.x), "y": ref.y})
    job = {
        "mode": "compare",
        "spec": ref.spec,
        "weights": str(folder / "init.npz"),
        "batches": str(folder / "batches.npz"),
        "lr": lr,
        "momentum": momentum,
        "threads": threads,
        "out": str(folder / "result"),
        "precisions": list(ref.runs),
    }
    (folder / "job.json").write_text(json.dumps(job))
    started = time.monotonic()
    _run_job(python, adapter.worker_path, folder, timeout)
    seconds = time.monotonic() - started
    info = json.loads((folder / "result.json").read_text())
    arrays = load_npz(folder / "result.npz")
    batch, steps = ref.x.shape[1], ref.x.shape[0]
    runs = {}
    for precision in ref.runs:
        got = info[precision]
        loaded = from_framework(framework, ref.spec, _strip(arrays, f"init:{precision}:"))
        final = from_framework(framework, ref.spec, _strip(arrays, f"final:{precision}:"))
        final = to_torch_convention(ref.spec, final, ref.initial, batch, steps)
        runs[precision] = TrainingRun(
            loaded,
            final,
            got["losses"],
            got["eval_loss"],
            got["native_shapes"],
            got["unmapped_variables"],
        )
    return FrameworkRun(runs, info["versions"], seconds)


def _strip(arrays: Arrays, prefix: str) -> Arrays:
    return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}


def _run_job(python: Path, worker: Path, folder: Path, timeout: float) -> None:
    log = folder / "worker.log"
    with log.open("wb") as handle:
        try:
            proc = subprocess.run(
                [str(python), str(worker), str(folder / "job.json")],
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise UserError(f"{worker.name} timed out after {timeout:g} s; log: {log}") from None
    if proc.returncode != 0:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        raise UserError(
            f"{worker.name} failed (exit {proc.returncode}): "
            f"{(lines or ['no output'])[-1][:300]}; log: {log}"
        )


# ------------------------------------------------------------------------------ putting it together


def check_framework(
    framework: str, ref: Reference, run: FrameworkRun, tol: Tolerances, steps: int
) -> list[CheckResult]:
    """The three checks of one framework against the reference, plus the float32 drift."""
    f32, f64 = run.runs["float32"], run.runs["float64"]
    r32, r64 = ref.runs["float32"], ref.runs["float64"]
    init = compare_weights(
        "identical initial weights",
        framework,
        ref.initial,
        f32.loaded,
        tol.init_atol,
        0.0,
        f32.native_shapes,
        unmatched=f32.unmapped,
    )
    entries: list[tuple[str, float, float | None, float]] = []
    for label, mine, theirs, rtol in (
        ("float32", r32, f32, tol.loss_rtol_float32),
        ("float64", r64, f64, tol.loss_rtol_float64),
    ):
        entries += [
            (f"{label} inference-mode loss, batch 0", mine.eval_loss, theirs.eval_loss, rtol),
            (
                f"{label} training-mode loss, batch 0",
                mine.losses[0],
                theirs.losses[0] if theirs.losses else None,
                rtol,
            ),
        ]
    loss = compare_losses(framework, entries)
    trained = compare_weights(
        f"weights close after {steps} SGD steps (float64)",
        framework,
        r64.final,
        f64.final,
        tol.trained_atol,
        tol.trained_rtol,
        f64.native_shapes,
        initial=r64.loaded,
    )
    drift = compare_weights(
        f"float32 drift after {steps} SGD steps (reported, not judged)",
        framework,
        r32.final,
        f32.final,
        tol.drift_atol,
        tol.drift_rtol,
        f32.native_shapes,
        initial=r32.loaded,
    )
    drift.judged = False
    return [init, loss, trained, drift]


def parse_frameworks(names: list[str]) -> list[str]:
    """The frameworks to check against PyTorch (which must be listed, first or not)."""
    for name in names:
        if name != REFERENCE:
            get_adapter(name)  # an unknown name is named before anything else
    if REFERENCE not in names:
        raise UserError("--frameworks must include torch, the reference")
    others = [n for n in names if n != REFERENCE]
    if not others:
        raise UserError("--frameworks needs at least one framework besides torch")
    for name in others:
        if not get_adapter(name).comparable:
            raise UserError(
                f"framework '{name}' runs PyTorch's own model; nothing to compare "
                "(comparable: tensorflow, mxnet)"
            )
    return list(dict.fromkeys(others))


def compare_frameworks(
    model: str,
    frameworks: list[str],
    batch_size: int = 8,
    steps: int = 3,
    lr: float = 0.05,
    seed: int = 0,
    num_classes: int = 10,
    input_size: int | None = None,
    tolerances: Tolerances | None = None,
    timeout: float = 900.0,
    workdir: Path | None = None,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> CompareReport:
    """Run the three checks for every framework in ``frameworks`` against PyTorch."""
    from distbench.models import check_model_name

    check_model_name(model)  # the cheap checks first: a wrong name needs no environment
    others = parse_frameworks(frameworks)
    for name in others:
        require_env(get_adapter(name).env)
    if batch_size < 2 or steps < 1:
        raise UserError("compare needs --batch-size of at least 2 and --steps of at least 1")
    tol = tolerances or Tolerances()
    say = progress or (lambda line: None)
    say(f"torch: building {model}, training {steps} steps in float32 and float64")
    ref = run_reference(model, batch_size, steps, lr, seed, num_classes, input_size)
    results = []
    with tempfile.TemporaryDirectory(prefix="distbench-compare-") as tmp:
        base = workdir or Path(tmp)
        for name in others:
            say(f"{name}: loading the weights, training {steps} steps in float32 and float64")
            run = run_framework(name, ref, base, lr, 0.0, timeout, threads)
            f32 = run.runs["float32"]
            results.append(
                FrameworkResult(
                    name,
                    run.versions,
                    f32.losses,
                    f32.eval_loss,
                    run.seconds,
                    check_framework(name, ref, run, tol, steps),
                )
            )
    r32 = ref.runs["float32"]
    return CompareReport(
        model,
        REFERENCE,
        ref.spec["input_shape"],
        num_classes,
        batch_size,
        steps,
        lr,
        seed,
        tol,
        r32.losses,
        r32.eval_loss,
        results,
    )
