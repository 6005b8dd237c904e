"""Outputs that cannot be written: a full disk, a file where a folder should be, a log that stops mid-run. Each is
one line naming the file or folder (exit 2), before the work where it can be known before, and a checkpoint save
that fails leaves the previous checkpoint whole.

A full disk is played by ``RLIMIT_FSIZE`` (writes past the limit fail with EFBIG, as they fail with ENOSPC on a
full disk): it needs no privileges and hits every writer, torch's included, at the byte it would run out."""

from __future__ import annotations

import errno
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dinov2.utils.config import CONFIGS_DIR
from Neighbor2Neighbor import evaluate_psnr
from tests.environment import REPO, command_env
from utils import run_log as run_log_module
from utils.atomic import WriteError, atomic_torch_save, atomic_write_text, is_temporary_file, make_folder
from utils.make_toy_dataset import main as make_toy_main

ENV = command_env(OMP_NUM_THREADS="1")


def _run_with_file_limit(command: list[str], limit_bytes: int | None) -> subprocess.CompletedProcess:
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, *command], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
                          preexec_fn=limit if limit_bytes is not None else None)


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(("error", "Traceback"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-2000:]
    return lines[0]


def _temporaries(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if is_temporary_file(path.name)]


def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "out" / "state.pt"
    atomic_torch_save({"step": 1}, target)

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("utils.atomic.os.fsync", full)
    for write in (lambda: atomic_torch_save({"step": 2}, target), lambda: atomic_write_text(target, "x")):
        with pytest.raises(WriteError) as error:
            write()
        assert str(error.value) == f"cannot write {target}: No space left on device"
    assert torch.load(target, weights_only=True) == {"step": 1} and not _temporaries(tmp_path)


@pytest.mark.slow
def test_torch_save_on_a_full_disk_is_the_disk_error_not_torchs(tmp_path):
    """torch.save reports a failed write as ``RuntimeError: ... unexpected pos``; the file's own error is kept."""
    code = ("import sys; from utils.atomic import atomic_torch_save; import torch\n"
            "try:\n    atomic_torch_save({'w': torch.zeros(50000)}, sys.argv[1])\n"
            "except OSError as error:\n    print(type(error).__name__, error)")
    shown = _run_with_file_limit(["-c", code, str(tmp_path / "w.pt")], 20_000)
    assert shown.stdout.strip() == f"WriteError cannot write {tmp_path / 'w.pt'}: File too large", shown.stderr
    assert not (tmp_path / "w.pt").exists() and not _temporaries(tmp_path)


def test_a_file_where_the_output_folder_should_be(tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    with pytest.raises(WriteError, match=f"cannot make the folder {blocker / 'sub'}: {blocker} is a file"):
        make_folder(blocker / "sub")
    with pytest.raises(SystemExit) as stop:
        make_toy_main(["--output-dir", str(blocker), "--limit", "5"])
    assert stop.value.code == 2 and str(blocker) in _error_line(capsys.readouterr().err)


def test_evaluate_psnr_refuses_its_output_before_the_work(tmp_path, capsys, digit_tree, monkeypatch):
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    monkeypatch.setattr(evaluate_psnr, "evaluate", lambda *a: pytest.fail("the work ran before the output check"))
    arguments = ["--clean", str(digit_tree / "train"), "--noisy", f"noisy:gauss100:{digit_tree}:train", "--quiet"]
    assert evaluate_psnr.main([*arguments, "--out", str(blocker / "result.json")]) == 2
    assert f"cannot make the folder {blocker}" in _error_line(capsys.readouterr().err)


def test_evaluate_psnr_on_a_full_disk(tmp_path, digit_tree):
    result = tmp_path / "result.json"
    shown = _run_with_file_limit(["Neighbor2Neighbor/evaluate_psnr.py", "--clean", str(digit_tree / "train"),
                                  "--noisy", f"noisy:gauss100:{digit_tree}:train", "--quiet", "--out", str(result)], 20)
    assert shown.returncode == 2 and f"cannot write {result}: File too large" in _error_line(shown.stderr)


@pytest.mark.slow
def test_a_neighbor2neighbor_save_that_fails_keeps_the_last_checkpoint(tmp_path, digit_tree):
    out = tmp_path / "n2n"
    command = ["Neighbor2Neighbor/train.py", "--data-dir", f"noisy:gauss100:{digit_tree}:train", "--output-dir",
               str(out), "--epochs", "2", "--batch-size", "4", "--patch-size", "16", "--n-feature", "8",
               "--num-workers", "0", "--device", "cpu", "--quiet"]
    assert _run_with_file_limit([*command, "--stop-after-epochs", "1"], None).returncode == 0
    first = (out / "last.pt").read_bytes()
    shown = _run_with_file_limit(command, len(first) // 2)
    assert shown.returncode == 2 and f"cannot write {out / 'last.pt'}: File too large" in _error_line(shown.stderr)
    assert (out / "last.pt").read_bytes() == first and not _temporaries(out)
    assert _run_with_file_limit(command, None).returncode == 0  # the disk freed, the rerun resumes and finishes
    assert torch.load(out / "last.pt", weights_only=False)["epoch"] == 2


@pytest.mark.slow
def test_a_dinov2_checkpoint_that_cannot_be_written(tmp_path, digit_tree):
    out = tmp_path / "run"
    shown = _run_with_file_limit(["-m", "dinov2.train", "--config-file", str(CONFIGS_DIR / "train" / "smoke_cpu.yaml"),
                                  "--output-dir", str(out), f"train.dataset_path={digit_tree}", "optim.epochs=1"],
                                 200_000)
    line = _error_line(shown.stderr)
    assert shown.returncode == 2 and line.startswith(f"error: cannot write {out}/model_") and "File too large" in line
    assert not list(out.glob("model_*.pth")) and not _temporaries(out)


def test_a_log_that_cannot_be_written_stops_alone(tmp_path, capsys, monkeypatch):
    class FullFile:
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            pass

    log = run_log_module._Log(FullFile(), tmp_path / "log.txt", sys.stderr)
    log.line("first")
    log.line("second")
    assert capsys.readouterr().err.count(f"warning: cannot write {tmp_path / 'log.txt'}") == 1 and log.broken
