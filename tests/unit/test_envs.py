"""Framework environments: what makes a finished one unusable, and how that is said."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from distbench.errors import UserError
from distbench.frameworks.envs import (
    BASE_PTH,
    base_paths,
    base_record,
    env_problem,
    is_installed,
    list_envs,
    require_env,
    torch_location,
)


@pytest.fixture
def envs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("DISTBENCH_ENVS", str(tmp_path))
    return tmp_path


def fake_env(root: Path, name: str, python_target: str = sys.executable, **marker: Any) -> Path:
    """A finished env: bin/python (a link, as venv makes it) and its marker."""
    (root / name / "bin").mkdir(parents=True)
    os.symlink(python_target, root / name / "bin" / "python")
    record = {"name": name, "versions": {}, "python": str(root / name / "bin" / "python")}
    record.update(marker)
    (root / name / "distbench-env.json").write_text(json.dumps(record))
    return root / name


def test_a_healthy_env_has_no_problem(envs: Path) -> None:
    fake_env(envs, "horovod", base=base_record())
    marker = json.loads((envs / "horovod/distbench-env.json").read_text())
    assert env_problem("horovod", marker) is None
    assert is_installed("horovod")
    assert require_env("horovod") == envs / "horovod" / "bin" / "python"


def test_an_env_whose_interpreter_is_gone_is_unusable(envs: Path) -> None:
    fake_env(envs, "mxnet", python_target=str(envs / "no-such-python"))
    rows = {row.name: row for row in list_envs()}
    assert not rows["mxnet"].installed
    assert "interpreter" in (rows["mxnet"].problem or "")
    with pytest.raises(UserError, match=r"unusable: its interpreter .* is gone.*--force"):
        require_env("mxnet")


def test_a_moved_env_is_unusable(envs: Path) -> None:
    fake_env(envs, "tensorflow", python=str(envs / "elsewhere" / "bin" / "python"))
    assert not is_installed("tensorflow")
    assert "moved" in (list_envs()[0].problem or "")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"torch": "0.0.1"}, "torch changed from 0.0.1 to"),
        ({"torch_dir": "/somewhere/else"}, "built against the torch in /somewhere/else"),
        ({"paths": ["/gone/site-packages"]}, "the distbench install it was built from is gone"),
    ],
)
def test_horovod_is_unusable_when_its_base_changed(
    envs: Path, change: dict[str, Any], says: str
) -> None:
    fake_env(envs, "horovod", base={**base_record(), **change})
    assert not is_installed("horovod")
    rows = {row.name: row for row in list_envs()}
    assert says in (rows["horovod"].problem or "")


def test_base_paths_put_this_torch_first() -> None:
    version, location = torch_location()
    paths = base_paths()
    assert paths[0] == str(Path(location).resolve())
    assert all(Path(p).is_dir() for p in paths) and len(paths) == len(set(paths))
    assert version == base_record()["torch"]
    assert BASE_PTH.endswith(".pth")  # site processes it at start-up
