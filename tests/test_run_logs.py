"""Run logs: DIR/log.txt holds what a DINOv2 or N2N run prints (resumes, phases, warnings, errors), without
progress bars; TensorBoard events repeat metrics.jsonl when asked."""

import sys
import warnings

import pytest

from dinov2.train.train import main as dinov2_main
from dinov2.utils.config import CONFIGS_DIR
from Neighbor2Neighbor import train as n2n
from tests.imagetrees import make_tree
from utils.make_toy_dataset import build_toy_dataset
from utils.run_log import run_log


def test_log_copies_lines_and_warnings_but_not_progress_bars(tmp_path, capsys):
    with run_log(tmp_path):
        print("phase 0: data")
        sys.stderr.write("\rtrain:  50%|#####     |\rtrain: 100%|##########|\n")
        warnings.warn("resuming with a changed config (optim.base_lr)")
    with pytest.raises(RuntimeError):
        with run_log(tmp_path):
            raise RuntimeError("disk full")
    log = (tmp_path / "log.txt").read_text()
    assert "phase 0: data" in log and "resuming with a changed config" in log
    assert "error: RuntimeError: disk full" in log
    assert "train:" not in log and "phase 0: data" in capsys.readouterr().out  # the console still shows everything
    assert sys.stdout is not None and not hasattr(sys.stdout, "pending")  # streams restored


def test_a_bar_redrawn_all_epoch_keeps_only_its_last_state_pending(tmp_path):
    with run_log(tmp_path):
        for step in range(10_000):
            sys.stderr.write(f"\repoch 1/2: {step} batch")
        pending = sys.stderr.pending
        sys.stderr.write("\n")
        print("epoch 1 done")
    assert pending == "\repoch 1/2: 9999 batch"
    log = (tmp_path / "log.txt").read_text()
    assert "epoch 1 done" in log and "batch" not in log


def test_dinov2_run_writes_its_log_and_appends_on_resume(tmp_path):
    build_toy_dataset(tmp_path / "digits", limit=2)
    args = ["--config-file", str(CONFIGS_DIR / "train" / "smoke_cpu.yaml"), "--output-dir", str(tmp_path / "run"),
            f"train.dataset_path={tmp_path / 'digits'}", "optim.epochs=1", "train.tensorboard=true"]
    assert dinov2_main(args) == 0
    assert dinov2_main(args[:-2] + ["optim.epochs=2", "train.tensorboard=true", "train.allow_config_change=true"]) == 0
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "phase 0:" in log and "resumed from" in log and "resuming with a changed config" in log
    assert any((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_n2n_run_writes_log_and_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    clean = make_tree(tmp_path / "clean", classes=2, per_class=4)
    out = tmp_path / "n2n"
    args = ["--data-dir", f"noisy:gauss50:{clean}:train", "--output-dir", str(out), "--epochs", "2",
            "--batch-size", "4", "--patch-size", "16", "--n-feature", "8", "--num-workers", "0", "--device", "cpu",
            "--quiet", "--tensorboard"]
    assert n2n.main(args + ["--stop-after-epochs", "1"]) == 0
    assert n2n.main(args) == 0
    log = (out / "log.txt").read_text()
    assert "epoch 1/2" in log and "resuming" in log and "epoch 2/2" in log
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("loss")] == [1, 2]
