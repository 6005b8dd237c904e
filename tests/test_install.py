"""The project is installed (pip install -e .): its console scripts resolve, no file patches sys.path, and a recipe
run with an interpreter that does not import this checkout stops at once, saying what to do."""

import importlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.environment import command_env

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_console_script_names_a_main_function(name):
    module, _, function = SCRIPTS[name].partition(":")
    assert callable(getattr(importlib.import_module(module), function)), SCRIPTS[name]


def test_an_installed_console_script_runs_from_anywhere(tmp_path):
    command = shutil.which("nrssl-generate-noise", path=str(Path(sys.executable).parent))
    assert command, "nrssl-generate-noise is not installed beside the interpreter: pip install -e ."
    result = subprocess.run([command, "--help"], cwd=tmp_path, env=command_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--noise" in result.stdout


def test_no_file_patches_the_import_path():
    patch = re.compile(r"sys\.path\.(insert|append)|^\s*export PYTHONPATH=", re.M)
    sources = [p for pattern in ("*.py", "*.sh", "*.sbatch") for p in REPO.rglob(pattern)
               if not p.relative_to(REPO).parts[0] in {"tests", "outputs", "data"} and ".git" not in p.parts]
    assert len(sources) > 100
    assert [str(p.relative_to(REPO)) for p in sources if patch.search(p.read_text())] == []


def test_a_recipe_refuses_an_interpreter_that_does_not_import_this_checkout(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    python = fake_bin / "python"  # the same interpreter without its site-packages: the project is not installed
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    python.chmod(0o755)
    env = command_env(PATH=f"{fake_bin}:{command_env()['PATH']}")
    env.pop("RECIPE_INSTALL_CHECKED", None)
    result = subprocess.run(["bash", str(REPO / "toy_mnist" / "mlp_exp.sh"), "--out", str(tmp_path / "out")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "not installed from" in result.stderr and "pip install -e ." in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_installed_checkout_check_names_the_checkout_it_finds(tmp_path):
    script = REPO / "utils" / "installed_checkout.py"
    here = subprocess.run([sys.executable, str(script), str(REPO)], cwd="/", capture_output=True, text=True)
    assert here.returncode == 0, here.stderr
    other = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd="/", capture_output=True, text=True)
    assert other.returncode == 2
    assert f"not installed from {tmp_path}" in other.stderr and f"finds it {REPO}" in other.stderr
