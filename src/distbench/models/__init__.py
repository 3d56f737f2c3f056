"""The model zoo: an explicit registry of model builders, user models, and block helpers.

Start at ``MODELS`` (name -> ``ModelSpec``) and ``build_model``. Every zoo model is an
``nn.Sequential`` whose top-level children are its blocks (a residual unit, inception module,
MBConv or fire module stays whole), so ``model_blocks`` gives the pieces that pipeline
parallelism cuts between and ``describe_blocks`` gives their sizes for the planner.
A user model is named ``path/to/file.py:ClassName`` or ``package.module:ClassName``.
Adding a zoo model: one file with a builder ``(num_classes, input_size, in_channels)``,
one line in ``MODELS``, one parameter-count test.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from distbench.errors import UserError
from distbench.models.alexnet import alexnet
from distbench.models.efficientnet import efficientnet_b0
from distbench.models.googlenet import googlenet
from distbench.models.lenet import lenet5
from distbench.models.mobilenet import mobilenetv2
from distbench.models.resnet import resnet18, resnet34, resnet50, resnext50
from distbench.models.squeezenet import squeezenet
from distbench.models.vgg import vgg16, vgg16e

__all__ = [
    "MODELS",
    "BlockInfo",
    "ModelSpec",
    "build_model",
    "check_model_name",
    "count_parameters",
    "describe_blocks",
    "load_user_model_class",
    "model_blocks",
    "model_defaults",
]


@dataclass(frozen=True)
class ModelSpec:
    """A zoo entry: how to build the model and what input it expects by default."""

    name: str
    build: Callable[[int, int, int], nn.Module]  # (num_classes, input_size, in_channels)
    default_input_size: int
    default_channels: int
    description: str


MODELS: dict[str, ModelSpec] = {
    "lenet5": ModelSpec("lenet5", lenet5, 32, 1, "LeNet-5 (LeCun et al. 1998)"),
    "alexnet": ModelSpec("alexnet", alexnet, 64, 3, "AlexNet (Krizhevsky et al. 2012)"),
    "vgg16": ModelSpec("vgg16", vgg16, 32, 3, "VGG-16 (Simonyan & Zisserman 2015)"),
    "vgg16e": ModelSpec(
        "vgg16e", vgg16e, 32, 3, "VGG configuration E, 16 convs (VGG-19; Simonyan & Zisserman 2015)"
    ),
    "googlenet": ModelSpec(
        "googlenet",
        googlenet,
        32,
        3,
        "GoogLeNet / Inception v1 with batch norm (Szegedy et al. 2015)",
    ),
    "squeezenet": ModelSpec(
        "squeezenet", squeezenet, 32, 3, "SqueezeNet 1.1 (Iandola et al. 2016)"
    ),
    "resnet18": ModelSpec("resnet18", resnet18, 32, 3, "ResNet-18 (He et al. 2016)"),
    "resnet34": ModelSpec("resnet34", resnet34, 32, 3, "ResNet-34 (He et al. 2016)"),
    "resnet50": ModelSpec("resnet50", resnet50, 32, 3, "ResNet-50 (He et al. 2016)"),
    "resnext50": ModelSpec("resnext50", resnext50, 32, 3, "ResNeXt-50 32x4d (Xie et al. 2017)"),
    "mobilenetv2": ModelSpec(
        "mobilenetv2", mobilenetv2, 32, 3, "MobileNetV2 (Sandler et al. 2018)"
    ),
    "efficientnet_b0": ModelSpec(
        "efficientnet_b0", efficientnet_b0, 32, 3, "EfficientNet-B0 (Tan & Le 2019)"
    ),
}

#: Smallest input side each zoo model accepts; 32 for the models not listed.
_MIN_INPUT_SIZE: dict[str, int] = {"lenet5": 16}
_USER_DEFAULTS = (32, 3)
_USER_FORMS = "path/to/file.py:ClassName, package.module:ClassName"


# ---------------------------------------------------------------------------- user models


def _split_user_spec(spec: str) -> tuple[str, str]:
    """'where:Class' -> (where, Class); the last colon splits, so Windows drives survive."""
    where, sep, cls_name = spec.rpartition(":")
    if not sep or not where or not cls_name:
        raise UserError(f"model '{spec}' must look like {_USER_FORMS}")
    return where, cls_name


def _import_file(path_text: str) -> ModuleType:
    """Import a .py file under a name derived from its absolute path (cached in sys.modules)."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise UserError(f"model file '{path_text}' not found")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    mod_name = f"_distbench_user_{resolved.stem}_{digest}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    loader_spec = importlib.util.spec_from_file_location(mod_name, resolved)
    if loader_spec is None or loader_spec.loader is None:
        raise UserError(f"cannot import model file '{path_text}'")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[mod_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        raise UserError(
            f"could not import model file '{path_text}': {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise UserError(f"could not import module '{name}': {type(exc).__name__}: {exc}") from exc


def _module_classes(module: ModuleType) -> list[str]:
    """Names of the nn.Module subclasses visible in ``module``, for error messages."""
    return sorted(
        name
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__
    )


def load_user_model_class(spec: str) -> type[nn.Module]:
    """Resolve ``path/to/file.py:ClassName`` or ``package.module:ClassName`` to the class.

    Raises ``UserError`` with one clear line for a malformed spec, a missing file, an import
    failure, a missing class, or a class that is not an ``nn.Module``.
    """
    where, cls_name = _split_user_spec(spec)
    is_file = where.endswith(".py")
    module = _import_file(where) if is_file else _import_module(where)
    obj: object = module
    for part in cls_name.split("."):
        if not hasattr(obj, part):
            known = ", ".join(_module_classes(module)) or "none"
            place = f"file '{where}'" if is_file else f"module '{where}'"
            raise UserError(f"{place} has no class '{cls_name}' (nn.Module classes there: {known})")
        obj = getattr(obj, part)
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        raise UserError(f"'{spec}' is not a torch.nn.Module subclass")
    return obj


def _build_user_model(spec: str, num_classes: int) -> nn.Module:
    """Construct ``Cls(num_classes=n)`` if the constructor takes it, else ``Cls()``."""
    cls = load_user_model_class(spec)
    try:
        takes_classes = "num_classes" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        takes_classes = False
    try:
        return cls(num_classes=num_classes) if takes_classes else cls()
    except Exception as exc:
        raise UserError(f"could not construct model '{spec}': {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------------------- names and building


def _is_user_spec(name: str) -> bool:
    return ":" in name


def check_model_name(name: str) -> None:
    """Raise ``UserError`` unless ``name`` is a zoo model or a loadable user model class."""
    if name in MODELS:
        return
    if _is_user_spec(name):
        load_user_model_class(name)
        return
    raise UserError(f"unknown model '{name}' (known: {', '.join(MODELS)}; or {_USER_FORMS})")


def model_defaults(name: str) -> tuple[int, int]:
    """Default ``(input_size, channels)``: the zoo entry's, or a user class's attributes.

    A user class may declare ``default_input_size`` / ``default_channels`` class attributes;
    otherwise (32, 3).
    """
    check_model_name(name)
    if name in MODELS:
        spec = MODELS[name]
        return spec.default_input_size, spec.default_channels
    cls = load_user_model_class(name)
    size = getattr(cls, "default_input_size", _USER_DEFAULTS[0])
    channels = getattr(cls, "default_channels", _USER_DEFAULTS[1])
    return int(size), int(channels)


def build_model(
    name: str, num_classes: int, input_size: int | None = None, in_channels: int | None = None
) -> nn.Module:
    """Build a zoo or user model; ``None`` input size / channels take the model's defaults.

    User models get only ``num_classes`` (their input shape is their own business).
    """
    check_model_name(name)
    if num_classes < 1:
        raise UserError(f"num_classes must be at least 1, got {num_classes}")
    if name not in MODELS:
        return _build_user_model(name, num_classes)
    spec = MODELS[name]
    size = spec.default_input_size if input_size is None else input_size
    channels = spec.default_channels if in_channels is None else in_channels
    min_size = _MIN_INPUT_SIZE.get(name, 32)
    if size < min_size:
        raise UserError(
            f"model '{name}' needs inputs of at least {min_size}x{min_size}, got {size}x{size}"
        )
    if channels < 1:
        raise UserError(f"in_channels must be at least 1, got {channels}")
    return spec.build(num_classes, size, channels)


# ---------------------------------------------------------------------------- blocks and sizes


def model_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Ordered blocks whose composition is ``model``: the children of an ``nn.Sequential``,
    otherwise the whole model as a single block named ``model``."""
    if isinstance(model, nn.Sequential):
        return list(model.named_children())
    return [("model", model)]


@dataclass(frozen=True)
class BlockInfo:
    """Size of one block: its parameters and its output for one sample (float32 bytes)."""

    name: str
    params: int
    output_shape: tuple[int, ...]  # per sample, without the batch dimension
    activation_bytes: int


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements (trainable or not; shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters())


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def describe_blocks(model: nn.Module, input_shape: tuple[int, int, int]) -> list[BlockInfo]:
    """Run one sample of shape ``(C, H, W)`` through the blocks and record each block's size.

    Runs in eval mode without gradients on the model's own device (a model built on the
    ``meta`` device costs nothing); the model's training flag is restored afterwards.
    """
    was_training = model.training
    model.eval()
    infos: list[BlockInfo] = []
    x = torch.zeros((1, *input_shape), device=_model_device(model))
    try:
        with torch.no_grad():
            for name, block in model_blocks(model):
                x = block(x)
                shape = tuple(int(d) for d in x.shape[1:])
                infos.append(BlockInfo(name, count_parameters(block), shape, 4 * math.prod(shape)))
    finally:
        model.train(was_training)
    return infos
