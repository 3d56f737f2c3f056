"""Model zoo: published parameter counts, forward shapes, block composition, user models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from distbench.errors import UserError
from distbench.models import (
    MODELS,
    build_model,
    check_model_name,
    count_parameters,
    describe_blocks,
    load_user_model_class,
    model_blocks,
    model_defaults,
)

# At 224x224, 3 channels, 1000 classes; the numbers torchvision reports for the same models.
PUBLISHED_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnext50": 25_028_904,
    "vgg16": 138_357_544,
    "vgg16e": 143_667_240,
    "alexnet": 61_100_840,
    "mobilenetv2": 3_504_872,
    "efficientnet_b0": 5_288_548,
    "squeezenet": 1_235_496,
    "googlenet": 6_624_904,
}

USER_MODEL_SOURCE = """
import torch
from torch import nn

class Tiny(nn.Module):
    default_input_size = 8
    default_channels = 1

    def __init__(self, num_classes=10):
        super().__init__()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))

class NoArgs(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))

class NotAModule:
    pass
"""


def _input(name: str, batch: int = 2) -> torch.Tensor:
    size, channels = model_defaults(name)
    return torch.randn(batch, channels, size, size)


def test_registry_has_exactly_the_zoo() -> None:
    assert set(MODELS) == {"lenet5", *PUBLISHED_PARAMS}
    for name, spec in MODELS.items():
        assert spec.name == name
        assert spec.description


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_published_parameter_count(name: str) -> None:
    with torch.device("meta"):
        model = build_model(name, 1000, 224, 3)
    assert count_parameters(model) == PUBLISHED_PARAMS[name]


def test_lenet5_classic_count() -> None:
    model = build_model("lenet5", 10)
    assert model_defaults("lenet5") == (32, 1)
    assert count_parameters(model) == 61_706


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_shape_at_default_input(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 5)
    out = model(_input(name))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("size", [32, 64, 224])
def test_input_sizes_on_meta(name: str, size: int) -> None:
    with torch.device("meta"):
        model = build_model(name, 7, size, 3)
        out = model(torch.empty(2, 3, size, size))
    assert out.shape == (2, 7)


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "mobilenetv2", "lenet5"])
def test_blocks_compose_to_model(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 10).eval()
    x = _input(name)
    blocks = model_blocks(model)
    assert len(blocks) > 3
    out = x
    with torch.no_grad():
        for _, block in blocks:
            out = block(out)
        expected = model(x)
    torch.testing.assert_close(out, expected)


def test_model_blocks_of_plain_module_is_whole_model() -> None:
    model = nn.Linear(3, 2)
    assert model_blocks(model) == [("model", model)]


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "alexnet"])
def test_same_seed_same_weights(name: str) -> None:
    torch.manual_seed(123)
    first = build_model(name, 10).state_dict()
    torch.manual_seed(123)
    second = build_model(name, 10).state_dict()
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


@pytest.mark.parametrize("name", ["resnet50", "googlenet", "squeezenet"])
def test_describe_blocks_sums_to_total(name: str) -> None:
    with torch.device("meta"):
        model = build_model(name, 1000, 224, 3)
    infos = describe_blocks(model, (3, 224, 224))
    assert [info.name for info in infos] == [name for name, _ in model_blocks(model)]
    assert sum(info.params for info in infos) == count_parameters(model)
    assert all(info.activation_bytes > 0 for info in infos)
    assert infos[-1].output_shape == (1000,)


def test_describe_blocks_restores_training_mode() -> None:
    model = build_model("lenet5", 10)
    infos = describe_blocks(model, (1, 32, 32))
    assert model.training
    assert infos[0].output_shape == (6, 14, 14)
    assert infos[0].activation_bytes == 4 * 6 * 14 * 14


@pytest.fixture()
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_models.py"
    path.write_text(USER_MODEL_SOURCE)
    return path


def test_user_model_from_file(user_file: Path) -> None:
    spec = f"{user_file}:Tiny"
    check_model_name(spec)
    assert model_defaults(spec) == (8, 1)
    model = build_model(spec, 3)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    assert load_user_model_class(spec).__name__ == "Tiny"


def test_user_model_without_num_classes(user_file: Path) -> None:
    spec = f"{user_file}:NoArgs"
    assert model_defaults(spec) == (32, 3)
    model = build_model(spec, 10)
    assert [name for name, _ in model_blocks(model)] == ["0", "1"]


def test_user_model_from_package() -> None:
    cls = load_user_model_class("torch.nn:Linear")
    assert cls is nn.Linear


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("resnet1000", "unknown model 'resnet1000' (known: lenet5, alexnet"),
        ("{dir}/missing.py:Tiny", "not found"),
        ("{file}:Missing", "has no class 'Missing'"),
        ("{file}:NotAModule", "is not a torch.nn.Module subclass"),
        ("{file}:", "must look like path/to/file.py:ClassName"),
        ("no_such_package_xyz.mod:Cls", "could not import module 'no_such_package_xyz.mod'"),
    ],
)
def test_bad_names_raise_user_error(user_file: Path, spec: str, message: str) -> None:
    name = spec.format(dir=user_file.parent, file=user_file)
    with pytest.raises(UserError) as info:
        check_model_name(name)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_model_lists_user_forms() -> None:
    with pytest.raises(UserError, match=r"package\.module:ClassName"):
        build_model("nope", 10)


def test_broken_user_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(UserError, match=r"could not import model file .*RuntimeError: boom"):
        check_model_name(f"{path}:Anything")


def test_too_small_input_is_user_error() -> None:
    with pytest.raises(UserError, match="at least 32x32"):
        build_model("vgg16", 10, input_size=8)
