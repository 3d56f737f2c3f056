"""Common operator names: the same work called by one name in every framework.

Where to start: ``COMMON_NAMES`` maps, per framework, the operator names its profiler
reports (``aten::convolution_backward`` in PyTorch, ``Conv2DBackpropFilter`` in TensorFlow,
``_backward_Convolution`` in MXNet) to one common name (``conv2d_backward``).
``common_profile`` rewrites a stored operator profile (``profiling/operators.py``'s summary)
in those names, adding up operators that map to the same name (and every operator of the
``update`` phase as ``sgd_update``: ``PHASE_OPERATOR``), so ``analysis/explain.py`` can
compare a TensorFlow run's operators with a PyTorch run's.

Names no table lists stay as they are, prefixed with their framework
(``tensorflow:ReadVariableOp``), so a comparison never pretends two frameworks ran the same
operator when it does not know. The tables cover the operators of distbench's model zoo on
CPU (convolution, matrix products, batch norm, ReLU, pooling, the loss, the SGD update);
docs/frameworks.md lists them and what each cannot tell apart.
"""

from __future__ import annotations

from typing import Any

#: The common name of each native operator name, per framework (Horovod runs PyTorch).
COMMON_NAMES: dict[str, dict[str, str]] = {
    "torch": {
        "aten::mkldnn_convolution": "conv2d",
        "aten::convolution": "conv2d",
        "aten::_convolution": "conv2d",
        "aten::conv2d": "conv2d",
        "aten::_slow_conv2d_forward": "conv2d",
        "aten::thnn_conv2d": "conv2d",
        "aten::convolution_backward": "conv2d_backward",
        "aten::mkldnn_convolution_backward": "conv2d_backward",
        "aten::_slow_conv2d_backward": "conv2d_backward",
        "aten::addmm": "matmul",
        "aten::mm": "matmul",
        "aten::matmul": "matmul",
        "aten::linear": "matmul",
        "aten::bmm": "matmul",
        "aten::native_batch_norm": "batch_norm",
        "aten::batch_norm": "batch_norm",
        "aten::_batch_norm_impl_index": "batch_norm",
        "aten::_native_batch_norm_legit": "batch_norm",
        "aten::native_batch_norm_backward": "batch_norm_backward",
        "aten::relu": "relu",
        "aten::relu_": "relu",
        "aten::clamp_min": "relu",
        "aten::clamp_min_": "relu",
        "aten::threshold_backward": "relu_backward",
        "aten::max_pool2d": "pool",
        "aten::max_pool2d_with_indices": "pool",
        "aten::adaptive_avg_pool2d": "pool",
        "aten::_adaptive_avg_pool2d": "pool",
        "aten::avg_pool2d": "pool",
        "aten::max_pool2d_with_indices_backward": "pool_backward",
        "aten::_adaptive_avg_pool2d_backward": "pool_backward",
        "aten::avg_pool2d_backward": "pool_backward",
        "aten::log_softmax": "loss",
        "aten::_log_softmax": "loss",
        "aten::nll_loss": "loss",
        "aten::nll_loss_forward": "loss",
        "aten::nll_loss_nd": "loss",
        "aten::cross_entropy_loss": "loss",
        "aten::_log_softmax_backward_data": "loss_backward",
        "aten::nll_loss_backward": "loss_backward",
        "aten::dropout": "dropout",
        "aten::native_dropout": "dropout",
        "aten::bernoulli_": "dropout",
        "aten::native_dropout_backward": "dropout_backward",
        "aten::add": "add",
        "aten::add_": "add",
        "aten::_foreach_add_": "sgd_update",
        "aten::_foreach_mul_": "sgd_update",
        "aten::_foreach_add": "sgd_update",
        "aten::copy_": "copy",
        "aten::clone": "copy",
        "aten::_to_copy": "copy",
        "aten::mean": "mean",
        "aten::sum": "sum",
        "aten::zero_": "fill",
        "aten::fill_": "fill",
        "aten::zeros": "fill",
        "aten::view": "reshape",
        "aten::reshape": "reshape",
        "aten::flatten": "reshape",
        "c10d::allreduce_": "allreduce",
        "gloo:all_reduce": "allreduce",
    },
    "tensorflow": {
        "Conv2D": "conv2d",
        "_FusedConv2D": "conv2d",
        "Conv2DBackpropInput": "conv2d_backward",
        "Conv2DBackpropFilter": "conv2d_backward",
        "MatMul": "matmul",
        "_FusedMatMul": "matmul",
        "BatchMatMulV2": "matmul",
        "FusedBatchNormV3": "batch_norm",
        "FusedBatchNormGradV3": "batch_norm_backward",
        "Relu": "relu",
        "ReluGrad": "relu_backward",
        "MaxPool": "pool",
        "AvgPool": "pool",
        "MaxPoolGrad": "pool_backward",
        "AvgPoolGrad": "pool_backward",
        "SparseSoftmaxCrossEntropyWithLogits": "loss",
        "Dropout": "dropout",
        "AddV2": "add",
        "Add": "add",
        "AddN": "add",
        "ResourceApplyKerasMomentum": "sgd_update",
        "ResourceApplyMomentum": "sgd_update",
        "ResourceApplyGradientDescent": "sgd_update",
        "AssignSubVariableOp": "sgd_update",
        "Identity": "copy",
        "Mean": "mean",
        "Sum": "sum",
        "ZerosLike": "fill",
        "Fill": "fill",
        "Reshape": "reshape",
        "BiasAdd": "bias_add",
        "BiasAddGrad": "bias_grad",
        "CollectiveReduceV2": "allreduce",
        "CollectiveReduce": "allreduce",
    },
    "mxnet": {
        "Convolution": "conv2d",
        "_backward_Convolution": "conv2d_backward",
        "FullyConnected": "matmul",
        "_backward_FullyConnected": "matmul",
        "dot": "matmul",
        "BatchNorm": "batch_norm",
        "_backward_BatchNorm": "batch_norm_backward",
        "Activation": "relu",
        "_backward_Activation": "relu_backward",
        "relu": "relu",
        "_backward_relu": "relu_backward",
        "Pooling": "pool",
        "_backward_Pooling": "pool_backward",
        "log_softmax": "loss",
        "pick": "loss",
        "softmax_cross_entropy": "loss",
        "_backward_log_softmax": "loss_backward",
        "_backward_pick": "loss_backward",
        "Dropout": "dropout",
        "_backward_Dropout": "dropout_backward",
        "elemwise_add": "add",
        "_plus": "add",
        "_Plus": "add",
        "add_n": "add",
        "ElementWiseSum": "add",
        "broadcast_add": "add",
        "_backward_add": "add",
        "sgd_mom_update": "sgd_update",
        "multi_sgd_mom_update": "sgd_update",
        "sgd_update": "sgd_update",
        "multi_sgd_update": "sgd_update",
        "_copy": "copy",
        "_copyto": "copy",
        "_backward_copy": "copy",
        "mean": "mean",
        "_backward_mean": "mean",
        "sum": "sum",
        "_zeros": "fill",
        "SetValueOp": "fill",
        "Flatten": "reshape",
        "Reshape": "reshape",
    },
}
#: Names that start with a prefix: TensorFlow's worker labels the elementwise operators of
#: a Keras batch-norm layer ``BatchNorm[Mul]``, ``BatchNormGrad[Sum]`` (tf_worker.op_label).
COMMON_PREFIXES: dict[str, tuple[tuple[str, str], ...]] = {
    "tensorflow": (("BatchNormGrad[", "batch_norm_backward"), ("BatchNorm[", "batch_norm")),
}
#: Frameworks whose operators are another's (Horovod trains a PyTorch model).
SAME_OPERATORS_AS = {"horovod": "torch"}
#: Phases whose every operator is one piece of work, whatever primitives a framework
#: spells it with: the SGD update is PyTorch's ``add_``/``mul_`` under ``Optimizer.step``,
#: TensorFlow's ``Mul``/``Sub``/``AssignVariableOp`` (distbench writes SGD out) and MXNet's
#: ``multi_sgd_update``.
PHASE_OPERATOR = {"update": "sgd_update"}


def operator_framework(framework: str) -> str:
    """The framework whose operator names a run's profile uses."""
    return SAME_OPERATORS_AS.get(framework, framework)


#: TensorFlow built with oneDNN renames its CPU kernels (``_MklNativeFusedConv2D``,
#: ``_MklMatMul``, ``_MklNativeConv2DBackpropFilterWithBias``) on CPUs it supports; the
#: operator is the one of the plain name.
ONEDNN_PREFIXES = ("_MklNative", "_Mkl")
ONEDNN_SUFFIXES = ("WithBias",)


def plain_names(framework: str, native: str) -> list[str]:
    """``native`` and, for a oneDNN kernel, the plain TensorFlow names it stands for."""
    names = [native]
    if framework != "tensorflow":
        return names
    for prefix in ONEDNN_PREFIXES:
        if native.startswith(prefix) and len(native) > len(prefix):
            plain = native.removeprefix(prefix)
            for suffix in ONEDNN_SUFFIXES:
                plain = plain.removesuffix(suffix)
            names += [plain, f"_{plain}"]  # "_MklNativeFusedConv2D" is "_FusedConv2D"
            break
    return names


def common_name(framework: str, native: str) -> str:
    """The common name of ``native``, else ``framework:native`` (never a guess)."""
    framework = operator_framework(framework)
    table = COMMON_NAMES.get(framework, {})
    for candidate in plain_names(framework, native):
        if candidate in table:
            return table[candidate]
    for prefix, name in COMMON_PREFIXES.get(framework, ()):
        if native.startswith(prefix):
            return name
    return f"{framework}:{native}"


def _merge_ops(ops: list[tuple[str, dict[str, Any]]], framework: str) -> list[dict[str, Any]]:
    """(phase, operator) pairs renamed to common names, those sharing one added up, largest
    first."""
    merged: dict[str, dict[str, Any]] = {}
    for phase, op in ops:
        name = PHASE_OPERATOR.get(phase) or common_name(framework, op["name"])
        slot = merged.setdefault(
            name, {"name": name, "self_s": 0.0, "total_s": 0.0, "calls": 0.0, "native": []}
        )
        slot["self_s"] += float(op.get("self_s", 0.0))
        slot["total_s"] += float(op.get("total_s", 0.0))
        slot["calls"] += float(op.get("calls", 0.0))
        slot["native"].append(op["name"])
    return sorted(merged.values(), key=lambda op: -op["self_s"])


def common_profile(profile: dict[str, Any], framework: str) -> dict[str, Any]:
    """``profile`` (an operator summary) with every phase's operators in common names.

    ``top`` becomes the merge of every phase's lists (each phase keeps more operators than
    the overall top list does, so the cross-phase view is the more complete one)."""
    phases = {}
    everything: list[tuple[str, dict[str, Any]]] = []
    for phase, entry in (profile.get("phases") or {}).items():
        ops = [(phase, op) for op in entry.get("ops") or []]
        everything.extend(ops)
        phases[phase] = {**entry, "ops": _merge_ops(ops, framework)}
    return {
        **profile,
        "phases": phases,
        "top": _merge_ops(everything, framework),
        "names": "common",
        "framework": operator_framework(framework),
    }
