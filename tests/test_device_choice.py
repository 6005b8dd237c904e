"""Device choice (utils/device.py, train.device): CUDA asked for and unusable is an error naming the option or key;
``auto`` on a machine whose GPUs torch cannot use says so instead of training on the CPU in silence."""

import warnings

import pytest
import torch

from dinov2.train.train import main as dinov2_main
from dinov2.utils.config import CONFIGS_DIR
from utils import device as device_choice
from utils import distributed
from utils.make_toy_dataset import build_toy_dataset


@pytest.fixture
def unusable_gpus(monkeypatch):
    """Two GPUs listed for the process, none usable by torch (as with a driver older than the wheel's CUDA)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")


def test_auto_warns_when_visible_gpus_are_unusable(unusable_gpus):
    with pytest.warns(UserWarning, match=r"--device auto: running on the CPU\. GPUs are visible "
                                         r"\(CUDA_VISIBLE_DEVICES=0,1\) but torch .* cannot use them"):
        assert device_choice.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"train.device cuda: CUDA is not available on this machine: GPUs are "):
        distributed.setup("cuda", key="train.device")


def test_auto_is_quiet_without_gpus_and_cpu_is_always_quiet(monkeypatch, unusable_gpus):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert distributed.setup("cpu").device == torch.device("cpu")  # asked for: no warning
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # every GPU hidden on purpose
        assert device_choice.visible_gpus() is None
        assert distributed.setup("auto").device == torch.device("cpu")


def test_training_with_train_device_cuda_on_an_unusable_machine_fails_before_work(unusable_gpus, tmp_path, capsys):
    build_toy_dataset(tmp_path / "digits", limit=2)
    code = dinov2_main(["--config-file", str(CONFIGS_DIR / "train" / "smoke_cpu.yaml"), "--output-dir",
                        str(tmp_path / "run"), f"train.dataset_path={tmp_path / 'digits'}", "train.device=cuda"])
    assert code == 2
    assert "error: train.device cuda: CUDA is not available on this machine" in capsys.readouterr().err
    assert not list((tmp_path / "run").glob("model_*.pth"))


def test_a_device_that_is_no_choice_is_refused_naming_the_key(tmp_path, capsys):
    build_toy_dataset(tmp_path / "digits", limit=2)
    code = dinov2_main(["--config-file", str(CONFIGS_DIR / "train" / "smoke_cpu.yaml"), "--output-dir",
                        str(tmp_path / "run"), f"train.dataset_path={tmp_path / 'digits'}", "train.device=gpu"])
    assert code == 2 and "train.device" in capsys.readouterr().err
