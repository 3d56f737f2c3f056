"""The architecture of a zoo model as plain JSON, so other frameworks can rebuild it exactly.

Start at ``export_spec``. It walks a PyTorch model (an ``nn.Sequential`` of blocks, as the
zoo builds them) and emits a list of nodes (``conv``, ``bn``, ``relu``, ``maxpool``,
``avgpool``, ``adaptive_avgpool``, ``flatten``, ``linear``, ``dropout``, and ``residual``
with a ``body``, a ``shortcut`` and a ``post`` activation). Every node with weights carries
its module path as ``name``, so its arrays are ``<name>.weight``, ``<name>.bias``,
``<name>.running_mean``, ``<name>.running_var`` in the PyTorch state dict and in every
``.npz`` exchanged with the adapters. Every node also carries ``in_shape`` (C, H, W) for
one sample, which the adapters need for layout conversions (flatten order) and pooling.
A module outside this vocabulary raises ``UserError`` naming it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from distbench.errors import UserError
from distbench.models.resnet import BasicBlock, Bottleneck

Node = dict[str, Any]


def _pair(value: int | tuple[int, ...], what: str, where: str) -> int:
    """Square kernels, strides and paddings only; adapters take one integer."""
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise UserError(f"{where}: non-square {what} {value} is not supported by adapters")
        return int(value[0])
    return int(value)


def _conv(name: str, m: nn.Conv2d) -> Node:
    if _pair(m.dilation, "dilation", name) != 1 or m.padding_mode != "zeros":
        raise UserError(f"{name}: dilated or non-zero-padded convs are not supported")
    if isinstance(m.padding, str):
        raise UserError(f"{name}: string padding '{m.padding}' is not supported by adapters")
    return {
        "op": "conv",
        "name": name,
        "in": m.in_channels,
        "out": m.out_channels,
        "kernel": _pair(m.kernel_size, "kernel", name),
        "stride": _pair(m.stride, "stride", name),
        "padding": _pair(m.padding, "padding", name),
        "groups": m.groups,
        "bias": m.bias is not None,
    }


def _bn(name: str, m: nn.BatchNorm2d) -> Node:
    if m.momentum is None or not m.affine or not m.track_running_stats:
        raise UserError(f"{name}: BatchNorm needs momentum, affine and running stats")
    return {
        "op": "bn",
        "name": name,
        "num": m.num_features,
        "eps": float(m.eps),
        "momentum": float(m.momentum),
    }


def _maxpool(name: str, m: nn.MaxPool2d) -> Node:
    if m.ceil_mode or _pair(m.dilation, "dilation", name) != 1:
        raise UserError(f"{name}: ceil_mode or dilated max-pool is not supported")
    return {
        "op": "maxpool",
        "name": name,
        "kernel": _pair(m.kernel_size, "kernel", name),
        "stride": _pair(m.stride or m.kernel_size, "stride", name),
        "padding": _pair(m.padding, "padding", name),
    }


def _leaf(name: str, m: nn.Module) -> Node:
    if isinstance(m, nn.Conv2d):
        return _conv(name, m)
    if isinstance(m, nn.BatchNorm2d):
        return _bn(name, m)
    if isinstance(m, nn.ReLU):
        return {"op": "relu", "name": name}
    if isinstance(m, nn.MaxPool2d):
        return _maxpool(name, m)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        size = m.output_size  # int or a tuple; None entries (keep the size) are refused
        if size is None or (isinstance(size, tuple) and None in size):
            raise UserError(f"{name}: adaptive pooling that keeps a side is not supported")
        return {"op": "adaptive_avgpool", "name": name, "out": _pair(size, "output", name)}  # type: ignore[arg-type]
    if isinstance(m, nn.Flatten):
        return {"op": "flatten", "name": name}
    if isinstance(m, nn.Linear):
        return {
            "op": "linear",
            "name": name,
            "in": m.in_features,
            "out": m.out_features,
            "bias": m.bias is not None,
        }
    if isinstance(m, nn.Dropout):
        return {"op": "dropout", "name": name, "p": float(m.p)}
    raise UserError(
        f"module '{name}' ({type(m).__name__}) has no cross-framework "
        "equivalent; adapters support conv, batch-norm, ReLU, pooling, linear, "
        "dropout and ResNet blocks"
    )


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _residual(name: str, m: BasicBlock | Bottleneck) -> Node:
    parts = ["conv1", "bn1", "relu", "conv2", "bn2"]
    if isinstance(m, Bottleneck):
        parts += ["relu", "conv3", "bn3"]
    body = [_leaf(_join(name, p), getattr(m, p)) for p in parts]
    shortcut = [] if m.downsample is None else _walk(m.downsample, _join(name, "downsample"))
    return {"op": "residual", "name": name, "body": body, "shortcut": shortcut, "post": "relu"}


def _walk(module: nn.Module, prefix: str) -> list[Node]:
    if isinstance(module, BasicBlock | Bottleneck):
        return [_residual(prefix, module)]
    if isinstance(module, nn.Sequential):
        nodes: list[Node] = []
        for child_name, child in module.named_children():
            nodes += _walk(child, _join(prefix, child_name))
        return nodes
    return [_leaf(prefix, module)]


def _attach_shapes(
    model: nn.Module, nodes: list[Node], input_shape: tuple[int, int, int], device: torch.device
) -> None:
    """Record every node's per-sample input shape (first call of its module) by running one
    sample through the model with forward pre-hooks."""
    shapes: dict[str, list[int]] = {}

    def remember(name: str) -> Any:
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            shapes.setdefault(name, [int(d) for d in args[0].shape[1:]])

        return hook

    handles = [m.register_forward_pre_hook(remember(n)) for n, m in model.named_modules()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    for node in iter_nodes(nodes):
        if node.get("name") in shapes:
            node["in_shape"] = shapes[node["name"]]


def _mark_flatten_inputs(nodes: list[Node]) -> None:
    """A linear layer fed by a flatten of (C, H, W) with H*W > 1 remembers that shape: NHWC
    frameworks flatten in (H, W, C) order and its weight columns must be permuted."""
    pending: list[int] | None = None
    for node in nodes:
        if node["op"] == "flatten":
            pending = node["in_shape"]
        elif node["op"] == "linear":
            if pending is not None and pending[1] * pending[2] > 1:
                node["flatten_from"] = pending
            pending = None
        elif node["op"] not in ("dropout", "relu"):
            pending = None


def export_spec(
    model: nn.Module, input_shape: tuple[int, int, int], num_classes: int
) -> dict[str, Any]:
    """The JSON-ready description of ``model`` for inputs of ``input_shape`` (C, H, W)."""
    nodes = _walk(model, "")
    device = next(model.parameters()).device
    _attach_shapes(model, nodes, input_shape, device)
    _mark_flatten_inputs(nodes)
    return {
        "format": 1,
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "nodes": nodes,
    }


def iter_nodes(nodes: list[Node]) -> list[Node]:
    """Every node, residual bodies and shortcuts included, in order."""
    out: list[Node] = []
    for node in nodes:
        out.append(node)
        if node["op"] == "residual":
            out += iter_nodes(node["body"]) + iter_nodes(node["shortcut"])
    return out


def weighted_nodes(spec: dict[str, Any]) -> list[Node]:
    return [n for n in iter_nodes(spec["nodes"]) if n["op"] in ("conv", "bn", "linear")]


def param_keys(node: Node) -> list[str]:
    """The state-dict keys a node owns (``num_batches_tracked`` is not a weight)."""
    name = node["name"]
    if node["op"] == "bn":
        return [f"{name}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
    return [f"{name}.weight"] + ([f"{name}.bias"] if node["bias"] else [])
