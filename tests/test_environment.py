"""utils/environment.py records the setting a figure depends on; the recipes fix and check the thread count."""

import json
import subprocess

import pytest
import torch

from tests.environment import REPO, command_env
from utils import environment


def test_a_setting_is_recorded_once_and_a_second_one_is_flagged(tmp_path, capsys, monkeypatch):
    path = tmp_path / "environment.json"
    assert environment.main(["--out", str(path)]) == 0
    assert environment.main(["--out", str(path)]) == 0
    [setting] = json.loads(path.read_text())
    assert setting["threads"] == torch.get_num_threads() and setting["torch"] == torch.__version__
    assert setting["cpu"] == environment.cpu_model() != ""
    assert f"{setting['threads']} thread" in capsys.readouterr().out
    monkeypatch.setattr(torch, "get_num_threads", lambda: setting["threads"] + 1)
    assert environment.main(["--out", str(path)]) == 0
    assert len(json.loads(path.read_text())) == 2 and "mix them" in capsys.readouterr().err


@pytest.mark.slow
def test_recipes_export_their_thread_count_and_refuse_a_bad_one(tmp_path):
    plan = subprocess.run(["bash", "exps/quickstart.sh", "--dry-run"], cwd=REPO, capture_output=True, text=True,
                          env=command_env(THREADS="3", OUT=str(tmp_path / "out"), DATA_ROOT=str(tmp_path)))
    assert plan.returncode == 0 and f"utils.environment --out {tmp_path / 'out' / 'environment.json'}" in plan.stdout
    default = subprocess.run(["bash", "-c", "source exps/lib/miniature_pipeline.sh; unset THREADS; set_threads t; "
                              "echo $THREADS $OMP_NUM_THREADS"], cwd=REPO, capture_output=True, text=True,
                             env=command_env(OMP_NUM_THREADS="1"))
    assert default.stdout.split() == ["1", "1"]  # OMP_NUM_THREADS, when set, is the default
    unset = subprocess.run(["bash", "-c", "source exps/lib/miniature_pipeline.sh; unset THREADS OMP_NUM_THREADS; "
                            "set_threads t; echo $THREADS $OMP_NUM_THREADS $MKL_NUM_THREADS"], cwd=REPO,
                           capture_output=True, text=True, env=command_env())
    assert unset.stdout.split() == ["2", "2", "2"]  # else 2, the setting of the README's tables
    for bad in ("0", "two", "-1"):
        refused = subprocess.run(["bash", "exps/miniature.sh", "--dry-run"], cwd=REPO, capture_output=True,
                                 text=True, env=command_env(THREAD_COUNTS=bad, OUT=str(tmp_path / "m")))
        assert refused.returncode == 2 and "THREADS must be a positive whole number" in refused.stderr, bad
    assert not (tmp_path / "out").exists() and not (tmp_path / "m").exists()
