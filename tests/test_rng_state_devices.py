"""CUDA RNG states survive a resume on a machine with another number of visible GPUs (dinov2/utils/checkpoint.py).

The CPU has no CUDA device, so torch.cuda's RNG functions are replaced by a fake set of devices."""

import pytest
import torch

from dinov2.utils import checkpoint


class FakeDevices:
    """``count`` CUDA devices, each with a one-byte RNG state, the current one ``current``."""

    def __init__(self, monkeypatch, count: int, current: int = 0):
        self.states = [torch.tensor([device], dtype=torch.uint8) for device in range(count)]
        self.current = current
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": self.states[self.current].clone())
        monkeypatch.setattr(torch.cuda, "set_rng_state", self._set)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in self.states])
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self._set_all)

    def _set(self, state, device="cuda"):
        self.states[self.current] = state.clone()

    def _set_all(self, states):
        for device, state in enumerate(states):
            self.states[device] = state.clone()  # IndexError past the visible devices, as torch's


def test_a_rank_saves_and_restores_its_own_device_only(monkeypatch):
    saving = FakeDevices(monkeypatch, count=8, current=3)
    state = checkpoint.capture_rng_state()
    assert torch.equal(state["cuda"], torch.tensor([3], dtype=torch.uint8))
    resuming = FakeDevices(monkeypatch, count=1)  # the same rank resumed where one GPU is visible
    checkpoint.restore_rng_state(state)
    assert torch.equal(resuming.states[0], saving.states[3])


def test_an_older_checkpoint_of_eight_devices_resumes_on_one(monkeypatch):
    FakeDevices(monkeypatch, count=8)
    state = checkpoint.capture_rng_state()
    state["cuda"] = [torch.tensor([10 + d], dtype=torch.uint8) for d in range(8)]  # the per-device list of before
    resuming = FakeDevices(monkeypatch, count=1)
    checkpoint.restore_rng_state(state)
    assert resuming.states[0].item() == 10
    state["cuda"] = state["cuda"][:1]
    FakeDevices(monkeypatch, count=2, current=1)
    with pytest.warns(UserWarning, match="none for device 1"):
        checkpoint.restore_rng_state(state)
