"""The cross-framework comparator's logic on synthetic arrays, and the conversions it relies
on (layouts, flatten order, batch-norm conventions), without TensorFlow or MXNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.frameworks import FRAMEWORK, adapter_strategy
from distbench.frameworks.compare import (
    Tolerances,
    compare_losses,
    compare_weights,
    make_batches,
    parse_frameworks,
)
from distbench.frameworks.envs import envs_root, list_envs, require_env
from distbench.frameworks.spec import export_spec, weighted_nodes
from distbench.frameworks.weights import (
    batch_to_framework,
    from_framework,
    spec_keys,
    to_framework,
    to_torch_convention,
)
from distbench.models import build_model
from distbench.registry import check_run, processes


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv1.weight": rng.normal(size=(6, 1, 5, 5)).astype(np.float32),
        "conv1.bias": rng.normal(size=6).astype(np.float32),
        "fc.weight": rng.normal(size=(10, 84)).astype(np.float32),
    }


# ------------------------------------------------------------------------------ checks


def test_identical_weights_pass_with_zero_deviation() -> None:
    ref = _arrays()
    result = compare_weights("identical initial weights", "fw", ref, dict(ref), atol=0.0)
    assert result.passed
    assert result.max_deviation == 0.0
    assert [d.name for d in result.deviations] == list(ref)


def test_a_perturbed_layer_fails_and_is_named() -> None:
    ref = _arrays()
    other = {k: v.copy() for k, v in ref.items()}
    other["conv1.bias"][3] += 1e-3
    result = compare_weights("weights", "fw", ref, other, atol=1e-5, rtol=0.0)
    assert not result.passed
    assert result.worst == "conv1.bias"
    assert [d.name for d in result.failures] == ["conv1.bias"]
    assert result.max_deviation == pytest.approx(1e-3, rel=1e-3)
    assert "conv1.bias" in result.summary() and result.summary().startswith("FAIL")


def test_relative_tolerance_scales_with_the_array() -> None:
    ref = {"w": np.array([100.0, -200.0])}
    close = {"w": np.array([100.1, -200.0])}
    assert compare_weights("c", "fw", ref, close, atol=0.0, rtol=1e-3).passed  # 0.1 <= 0.2
    assert not compare_weights("c", "fw", ref, close, atol=0.0, rtol=1e-4).passed


def test_missing_misshapen_unmatched_and_nan_arrays_fail() -> None:
    ref = _arrays()
    other = {
        "conv1.weight": ref["conv1.weight"].transpose(2, 3, 1, 0),  # layout not converted
        "fc.weight": np.full_like(ref["fc.weight"], np.nan),
    }
    result = compare_weights("c", "fw", ref, other, atol=1.0, unmatched=["extra_kernel"])
    notes = {d.name: d.note for d in result.failures}
    assert not result.passed
    assert notes["conv1.bias"] == "missing"
    assert notes["conv1.weight"].startswith("shape [5, 5, 1, 6]")
    assert notes["extra_kernel"] == "no PyTorch counterpart"
    assert "fc.weight" in notes  # NaN is never close


def test_moved_reports_how_far_the_reference_trained() -> None:
    initial = {"w": np.zeros(3)}
    ref = {"w": np.array([0.5, 0.0, -1.0])}
    result = compare_weights("c", "fw", ref, dict(ref), atol=0.0, initial=initial)
    assert result.deviations[0].moved == 1.0


def test_losses_relative_tolerance_and_nan() -> None:
    ok = compare_losses("fw", [("a", 2.0, 2.0001, 1e-4), ("b", 1.0, 1.0, 1e-9)])
    assert ok.passed
    bad = compare_losses("fw", [("a", 2.0, 2.001, 1e-4), ("b", 1.0, float("nan"), 1e-9)])
    assert not bad.passed
    assert {d.name for d in bad.failures} == {"a", "b"}


def test_parse_frameworks_needs_torch_and_a_comparable_other() -> None:
    assert parse_frameworks(["torch", "tensorflow", "mxnet"]) == ["tensorflow", "mxnet"]
    for names in (["tensorflow"], ["torch"], ["torch", "horovod"], ["torch", "jax"]):
        with pytest.raises(UserError):
            parse_frameworks(names)


def test_batches_do_not_depend_on_the_number_of_steps() -> None:
    x3, y3 = make_batches(3, 4, [1, 8, 8], 10, seed=1)
    x1, y1 = make_batches(1, 4, [1, 8, 8], 10, seed=1)
    assert np.array_equal(x3[0], x1[0]) and np.array_equal(y3[0], y1[0])
    assert x3.dtype == np.float32 and y3.max() < 10


def test_default_tolerances_are_tight_where_exactness_is_expected() -> None:
    tol = Tolerances()
    assert tol.init_atol == 0.0
    assert tol.trained_rtol <= 1e-6 and tol.loss_rtol_float64 <= 1e-9


# ------------------------------------------------------------------------------ conversions


def _lenet_spec() -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    model = build_model("lenet5", 10, 32, 1)
    return model, export_spec(model, (1, 32, 32), 10)


def test_spec_covers_every_weight_of_the_zoo_models() -> None:
    for name, shape in (
        ("lenet5", (1, 32, 32)),
        ("resnet18", (3, 32, 32)),
        ("alexnet", (3, 64, 64)),
        ("resnet50", (3, 32, 32)),
    ):
        with torch.device("meta"):
            model = build_model(name, 10, shape[1], shape[0])
        model = model.to_empty(device="cpu")
        spec = export_spec(model, shape, 10)
        state = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
        assert spec_keys(spec) == state, name


def test_unsupported_module_is_named() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU())
    with pytest.raises(UserError, match="GELU"):
        export_spec(model, (1, 8, 8), 2)


def test_tensorflow_layout_round_trip_is_exact() -> None:
    model, spec = _lenet_spec()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    tf_arrays = to_framework("tensorflow", spec, state)
    assert tf_arrays["conv1.0.weight"].shape == (5, 5, 1, 6)  # HWIO
    assert tf_arrays["fc.weight"].shape == (84, 10)  # (in, out)
    back = from_framework("tensorflow", spec, tf_arrays)
    assert all(np.array_equal(back[k], state[k]) for k in spec_keys(spec))
    mx_arrays = to_framework("mxnet", spec, state)
    assert all(np.array_equal(mx_arrays[k], state[k]) for k in spec_keys(spec))


def test_dense_after_flatten_sees_channels_last_inputs_correctly() -> None:
    model, spec = _lenet_spec()
    node = next(n for n in weighted_nodes(spec) if n["name"] == "fc1.0")
    assert node["flatten_from"] == [16, 5, 5]
    weight = model.state_dict()["fc1.0.weight"].numpy()
    kernel = to_framework(
        "tensorflow", spec, {k: v.numpy() for k, v in model.state_dict().items()}
    )["fc1.0.weight"]
    features = np.random.default_rng(0).normal(size=(2, 16, 5, 5)).astype(np.float32)
    torch_out = features.reshape(2, -1) @ weight.T  # PyTorch: flatten C, H, W
    nhwc = batch_to_framework("tensorflow", features)  # Keras: flatten H, W, C
    np.testing.assert_allclose(nhwc.reshape(2, -1) @ kernel, torch_out, rtol=1e-5, atol=1e-5)


def test_running_variance_conversion_is_exact() -> None:
    """Simulate K batch-norm updates with the biased (Keras, MXNet) and unbiased (PyTorch)
    batch variance; the conversion must turn one into the other."""
    spec = {
        "nodes": [
            {
                "op": "bn",
                "name": "bn",
                "num": 3,
                "eps": 1e-5,
                "momentum": 0.1,
                "in_shape": [3, 4, 4],
            }
        ]
    }
    batch, steps, rng = 2, 4, np.random.default_rng(0)
    v0 = np.ones(3)
    biased, unbiased = v0.copy(), v0.copy()
    n = batch * 16
    for _ in range(steps):
        var = rng.uniform(0.5, 2.0, size=3)
        biased = 0.9 * biased + 0.1 * var
        unbiased = 0.9 * unbiased + 0.1 * var * n / (n - 1)
    out = to_torch_convention(
        spec, {"bn.running_var": biased}, {"bn.running_var": v0}, batch, steps
    )
    np.testing.assert_allclose(out["bn.running_var"], unbiased, rtol=1e-12)


# ------------------------------------------------------------------ registry, config, envs


def test_adapters_declare_their_strategies() -> None:
    assert set(FRAMEWORK) == {"tensorflow", "mxnet", "horovod"}
    assert adapter_strategy("mxnet", "async").synchronous is False
    assert (
        adapter_strategy("tensorflow", "async").world_size(
            RunConfig(model="lenet5", framework="tensorflow", strategy="async", workers=3)
        )
        == 5
    )


def test_run_config_consults_the_adapter_for_strategies() -> None:
    cfg = RunConfig(model="lenet5", framework="mxnet", strategy="sync", workers=2)
    assert processes(cfg) == 4  # scheduler + server + 2 workers
    with pytest.raises(UserError, match="has no strategy 'ddp'"):
        check_run(RunConfig(model="lenet5", framework="tensorflow", strategy="ddp"))
    with pytest.raises(UserError, match="unknown framework"):
        RunConfig(model="lenet5", framework="jax")
    with pytest.raises(UserError, match="exactly one worker"):
        check_run(
            RunConfig(model="lenet5", framework="tensorflow", strategy="sequential", workers=2)
        )


def test_envs_live_under_distbench_envs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DISTBENCH_ENVS", str(tmp_path))
    assert envs_root() == tmp_path
    rows = {row.name: row for row in list_envs()}
    assert not rows["tensorflow"].installed
    assert rows["mxnet"].path == str(tmp_path / "mxnet")
    (tmp_path / "mxnet" / "bin").mkdir(parents=True)  # an unfinished install: no marker
    with pytest.raises(UserError, match="distbench env install mxnet"):
        require_env("mxnet")
