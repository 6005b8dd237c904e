"""One run per output folder, no silent config drift, no output folder inside an input tree (exit status 2, the
message names the folder, key or option, nothing written)."""

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dinov2.eval import knn
from dinov2.train.train import main as dinov2_main
from dinov2.utils.config import CONFIGS_DIR
from Neighbor2Neighbor import train as n2n
from tests.environment import command_env, dead_pid
from tests.eval_fixtures import make_separable_tree, make_teacher_export
from tests.imagetrees import make_tree
from utils.generate_noise import main as generate_main
from utils.make_toy_dataset import build_toy_dataset
from utils import run_lock
from utils.atomic import host_name
from utils.run_lock import FolderLocked, folder_lock, lock_path

REPO = Path(__file__).resolve().parents[1]
HOLD = "import sys\nfrom pathlib import Path\nfrom utils.run_lock import folder_lock\n" \
       "with folder_lock(Path(sys.argv[1])):\n    print('locked', flush=True)\n    sys.stdin.read()\n"


def test_a_second_holder_is_refused_naming_the_folder_and_pid(tmp_path):
    with folder_lock(tmp_path / "run"):
        with pytest.raises(FolderLocked, match=rf"{tmp_path / 'run'} is in use by pid {os.getpid()} on "):
            with folder_lock(tmp_path / "run"):
                pass
        with folder_lock(tmp_path / "run", "shard-1-of-2"):  # the shards of one job hold their own locks
            pass
    with folder_lock(tmp_path / "run"):  # released at the end of the block
        pass


def test_a_lock_left_by_a_killed_process_never_blocks(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=command_env(), text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderLocked, match=f"pid {holder.pid}"):
            with folder_lock(tmp_path / "run"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_path(tmp_path / "run").is_file()
    with folder_lock(tmp_path / "run"):
        pass


@pytest.fixture
def flock_unsupported(monkeypatch):
    """A filesystem that refuses flock, as NFS without a lock daemon does (ENOLCK)."""
    def refuse(descriptor, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    monkeypatch.setattr(run_lock.fcntl, "flock", refuse)


def test_without_flock_an_exclusive_file_locks_and_names_its_holder(tmp_path, flock_unsupported):
    held = run_lock.held_path(lock_path(tmp_path / "run"))
    with pytest.warns(UserWarning, match="does not support flock"):
        with folder_lock(tmp_path / "run"):
            assert held.read_text().startswith(f"pid {os.getpid()} on {host_name()} since ")
            with pytest.raises(FolderLocked, match=rf"in use by pid {os.getpid()} .*delete {held}"):
                with folder_lock(tmp_path / "run"):
                    pass
    assert not held.exists()  # released at the end of the block
    with pytest.warns(UserWarning, match="does not support flock"), pytest.raises(RuntimeError):
        with folder_lock(tmp_path / "run"):
            raise RuntimeError("the job failed")
    assert not held.exists()  # and when the block fails


def test_without_flock_a_dead_holder_of_this_machine_is_replaced_and_another_machines_kept(tmp_path,
                                                                                            flock_unsupported):
    held = run_lock.held_path(lock_path(tmp_path / "run"))
    held.parent.mkdir()
    held.write_text(f"pid {dead_pid()} on {host_name()} since 2026-01-01 00:00:00\n")
    with pytest.warns(UserWarning) as caught:
        with folder_lock(tmp_path / "run"):
            assert held.read_text().startswith(f"pid {os.getpid()} ")
    assert any("has ended; taking the lock" in str(warning.message) for warning in caught)
    held.write_text(f"pid {dead_pid()} on node-0042 since 2026-01-01 00:00:00\n")  # its pid means nothing here
    with pytest.warns(UserWarning), pytest.raises(FolderLocked, match="in use by pid .* on node-0042"):
        with folder_lock(tmp_path / "run"):
            pass
    assert held.is_file()


def test_other_errors_of_flock_are_not_taken_for_an_unsupported_filesystem(tmp_path, monkeypatch):
    def fail(descriptor, operation):
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    monkeypatch.setattr(run_lock.fcntl, "flock", fail)
    with pytest.raises(OSError, match=os.strerror(errno.EIO)):
        with folder_lock(tmp_path / "run"):
            pass


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("locks") / "digits"
    build_toy_dataset(root, limit=2)
    return root


def _dinov2(digits: Path, out: Path, *overrides: str) -> list[str]:
    return ["--config-file", str(CONFIGS_DIR / "train" / "smoke_cpu.yaml"), "--output-dir", str(out),
            f"train.dataset_path={digits}", "optim.epochs=1", *overrides]


def test_every_long_job_refuses_a_folder_in_use(digits, tmp_path, capsys):
    out = tmp_path / "busy"
    clean = make_tree(tmp_path / "clean", classes=2, per_class=4)
    make_teacher_export(tmp_path / "run", 9)
    data = make_separable_tree(tmp_path / "data", num_classes=2, train_per_class=4, val_per_class=2)
    jobs = {
        "dinov2": lambda: dinov2_main(_dinov2(digits, out)),
        "n2n": lambda: n2n.main(["--data-dir", f"noisy:gauss50:{clean}:train", "--output-dir", str(out),
                                 "--epochs", "1", "--batch-size", "4", "--patch-size", "16", "--n-feature", "8",
                                 "--num-workers", "0", "--device", "cpu", "--quiet"]),
        "knn": lambda: knn.main(["--pretrained-weights", str(tmp_path / "run"), "--train-dataset",
                                 str(data / "train"), "--val-dataset", str(data / "val"), "--output-dir", str(out),
                                 "--crop-size", "32", "--num-workers", "0", "--device", "cpu", "--quiet"]),
    }
    for name, job in jobs.items():  # training runs hold the folder; evaluations their protocol's share of it
        with folder_lock(out, "knn" if name == "knn" else ""):
            assert job() == 2, name
            assert f"{out} is in use by pid {os.getpid()}" in capsys.readouterr().err, name
    with folder_lock(tmp_path / "noisy-gauss50"):
        assert generate_main(["--src", str(clean), "--noise", "gauss50", "--out-prefix", str(tmp_path / "noisy"),
                              "--num-workers", "0", "--quiet"]) == 2
        assert "in use by pid" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [".lock", ".lock-knn"]  # nothing else written


@pytest.mark.slow
def test_resuming_with_another_config_is_refused_naming_every_changed_key(digits, tmp_path, capsys):
    out = tmp_path / "run"
    assert dinov2_main(_dinov2(digits, out)) == 0
    config = (out / "config.yaml").read_text()
    other = tmp_path / "other"
    build_toy_dataset(other, limit=2)
    assert dinov2_main(_dinov2(digits, out, "optim.base_lr=0.1", f"train.dataset_path={other}")) == 2
    error = capsys.readouterr().err
    assert "optim.base_lr: 0.004 -> 0.1" in error and "train.dataset_path" in error
    assert "train.allow_config_change=true" in error and (out / "config.yaml").read_text() == config
    assert dinov2_main(_dinov2(digits, out, "train.num_workers=0")) == 0  # where and how fast: free to change
    assert dinov2_main(_dinov2(digits, out, "optim.epochs=2", "train.allow_config_change=true")) == 0
    assert "resuming with a changed config (optim.epochs: 1 -> 2)" in (out / "log.txt").read_text()


def test_output_folders_inside_an_input_tree_are_refused(digits, tmp_path, capsys):
    inside = digits / "train" / "run"
    assert dinov2_main(_dinov2(digits, inside)) == 2
    assert "train.dataset_path" in capsys.readouterr().err and not inside.exists()
    clean = make_tree(tmp_path / "clean", classes=2, per_class=4)
    assert n2n.main(["--data-dir", str(clean / "train"), "--output-dir", str(clean / "train" / "n2n")]) == 2
    assert "--data-dir" in capsys.readouterr().err and not (clean / "train" / "n2n").exists()
    make_teacher_export(tmp_path / "run", 9)
    assert knn.main(["--pretrained-weights", str(tmp_path / "run"), "--train-dataset", str(clean / "train"),
                     "--val-dataset", str(clean / "val"), "--output-dir", str(clean / "val" / "eval")]) == 2
    assert "--val-dataset" in capsys.readouterr().err and not (clean / "val" / "eval").exists()


@pytest.mark.slow
def test_two_real_processes_on_one_n2n_folder(tmp_path):
    clean = make_tree(tmp_path / "clean", classes=2, per_class=4)
    command = ["Neighbor2Neighbor/train.py", "--data-dir", f"noisy:gauss50:{clean}:train", "--output-dir",
               str(tmp_path / "run"), "--epochs", "1", "--batch-size", "4", "--patch-size", "16", "--n-feature", "8",
               "--num-workers", "0", "--device", "cpu", "--quiet"]
    env = command_env(OMP_NUM_THREADS="1")
    # the first run waits at its first optimizer step, holding the folder, until the test lets it go
    first = subprocess.Popen([sys.executable, "-m", "tests.stop_at", "--event", "step", "--at", "1", "--how", "pause",
                              "--", *command], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        assert first.stdout.readline().strip() == "paused at step 1"
        second = subprocess.run([sys.executable, *command], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 2 and f"is in use by pid {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
