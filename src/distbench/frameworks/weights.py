"""Weights and batches across frameworks: one ``.npz`` format, layout conversions, names.

Every array travels keyed by its PyTorch state-dict name (``layer1_0.conv1.weight``), so the
name mapping is the identity and a mismatch names the layer. What differs is the layout,
converted here, in the main environment, so the worker programs only assign arrays:

- TensorFlow (NHWC): conv kernels OIHW -> HWIO; dense kernels (out, in) -> (in, out), with
  the input columns of a dense layer fed by a flatten of (C, H, W) permuted from C-H-W to
  H-W-C order (Keras flattens channels-last); batches NCHW -> NHWC.
- MXNet (NCHW, Gluon): the same layouts as PyTorch; nothing to convert.

Batch-norm running variance: PyTorch updates it with the unbiased batch variance
(n / (n - 1) times the biased one, ``n = batch x H x W``); Keras 3 and MXNet use the biased
one. After ``k`` steps with momentum ``m`` (PyTorch's convention, ``1 - `` theirs), both are
``d^k v0 + (1 - d) sum d^(k-j) var_j`` with ``d = 1 - m``, so the PyTorch value is exactly
``d^k v0 + n/(n-1) (v_theirs - d^k v0)``; ``to_torch_convention`` applies that map.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from distbench.frameworks.spec import Node, param_keys, weighted_nodes

Arrays = dict[str, np.ndarray]
#: Frameworks whose data and weights are channels-last.
CHANNELS_LAST = frozenset({"tensorflow"})


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]


def load_npz(path: Path) -> Arrays:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def spec_keys(spec: dict[str, Any]) -> list[str]:
    """Every weight the architecture owns, in model order."""
    return [key for node in weighted_nodes(spec) for key in param_keys(node)]


def _dense_to_tf(weight: np.ndarray, node: Node) -> np.ndarray:
    out = weight
    if "flatten_from" in node:
        c, h, w = node["flatten_from"]
        out = weight.reshape(weight.shape[0], c, h, w).transpose(0, 2, 3, 1)
        out = out.reshape(weight.shape[0], -1)
    return out.T


def _dense_from_tf(kernel: np.ndarray, node: Node) -> np.ndarray:
    out = kernel.T
    if "flatten_from" in node:
        c, h, w = node["flatten_from"]
        out = out.reshape(out.shape[0], h, w, c).transpose(0, 3, 1, 2).reshape(out.shape[0], -1)
    return out


def _node_by_key(spec: dict[str, Any]) -> dict[str, Node]:
    return {key: node for node in weighted_nodes(spec) for key in param_keys(node)}


def to_framework(framework: str, spec: dict[str, Any], weights: Mapping[str, np.ndarray]) -> Arrays:
    """PyTorch-layout weights -> the framework's layout (same keys, float32)."""
    nodes = _node_by_key(spec)
    out: Arrays = {}
    for key in spec_keys(spec):
        array = np.asarray(weights[key], dtype=np.float32)
        if framework in CHANNELS_LAST and key.endswith(".weight"):
            node = nodes[key]
            if node["op"] == "conv":
                array = array.transpose(2, 3, 1, 0)
            elif node["op"] == "linear":
                array = _dense_to_tf(array, node)
        out[key] = np.ascontiguousarray(array)
    return out


def from_framework(
    framework: str, spec: dict[str, Any], arrays: Mapping[str, np.ndarray]
) -> Arrays:
    """The framework's layout -> PyTorch's (dtype kept); keys the spec lacks are left out."""
    nodes = _node_by_key(spec)
    out: Arrays = {}
    for key in spec_keys(spec):
        if key not in arrays:
            continue
        array = np.asarray(arrays[key])  # float64 stays float64 (compare's training check)
        if framework in CHANNELS_LAST and key.endswith(".weight"):
            node = nodes[key]
            if node["op"] == "conv":
                array = array.transpose(3, 2, 0, 1)
            elif node["op"] == "linear":
                array = _dense_from_tf(array, node)
        out[key] = array
    return out


def batch_to_framework(framework: str, x: np.ndarray) -> np.ndarray:
    """Inputs (..., C, H, W) -> the framework's layout."""
    if framework in CHANNELS_LAST:
        return np.ascontiguousarray(np.moveaxis(x, -3, -1))
    return np.ascontiguousarray(x)


def bn_sample_count(node: Node, batch: int) -> int:
    """Values per channel a batch-norm layer averages over: batch x H x W."""
    _, h, w = node["in_shape"]
    return int(batch * h * w)


def to_torch_convention(
    spec: dict[str, Any],
    arrays: Mapping[str, np.ndarray],
    initial: Mapping[str, np.ndarray],
    batch: int,
    steps: int,
) -> Arrays:
    """Map running variances updated with the biased batch variance (Keras 3, MXNet) to
    PyTorch's unbiased convention after ``steps`` training steps of ``batch`` samples."""
    out = dict(arrays)
    for node in weighted_nodes(spec):
        key = f"{node['name']}.running_var"
        if node["op"] != "bn" or key not in out:
            continue
        n = bn_sample_count(node, batch)
        decay = (1.0 - node["momentum"]) ** steps
        base = decay * np.asarray(initial[key], dtype=np.float64)
        corrected = base + n / (n - 1) * (np.asarray(out[key], dtype=np.float64) - base)
        out[key] = corrected.astype(np.asarray(out[key]).dtype)
    return out
