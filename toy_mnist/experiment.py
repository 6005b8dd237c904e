"""One repetition of the toy experiment: the clean, noisy and curriculum arms, each pre-trained then probed.

* clean: ``pretrain_epochs`` on clean views, probed on clean images;
* noisy: ``pretrain_epochs`` on noisy views, probed on noisy images;
* curriculum: the clean arm's weights after ``switch_epoch`` epochs, then the remaining epochs on noisy views
  with a fresh Adam, probed on noisy images.

Files in the repetition folder: ``<arm>.json`` (probe result and loss history), ``<arm>_epoch<E>.pt``
(weights), and ``result.json`` last. An arm whose JSON exists is not run again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from toy_mnist.budget import Budget
from toy_mnist.data import ToyData
from toy_mnist.model import MLPHead
from toy_mnist.probe import train_probe
from toy_mnist.train import checkpoint_path, pretrain
from utils.atomic import atomic_write_json, make_folder
from utils.seeding import torch_seed

ARMS = ("clean", "noisy", "curriculum")
RESULT_NAME = "result.json"


def new_encoder(seed: int) -> MLPHead:
    """The encoder's initial weights for repetition ``seed`` (shared by the clean and noisy arms)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed(seed, "encoder-init"))
        return MLPHead()


def load_encoder(path: Path) -> MLPHead:
    """An encoder with the weights saved at ``path`` (a state dict, loaded with ``weights_only``)."""
    if not path.is_file():
        raise FileNotFoundError(f"encoder checkpoint {path} is missing (rerun the clean arm of this repetition)")
    model = MLPHead()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def _run_arm(arm: str, data: ToyData, seed: int, budget: Budget, folder: Path, device: torch.device,
             noise_std: float, batch_size: int, lr: float, progress: bool) -> dict:
    noisy = None if arm == "clean" else noise_std
    if arm == "curriculum":
        encoder = load_encoder(checkpoint_path(folder, "clean", budget.switch_epoch))
        epochs = budget.curriculum_noisy_epochs
        saves = [epochs]
    else:
        encoder, epochs = new_encoder(seed), budget.pretrain_epochs
        saves = [budget.switch_epoch, epochs] if arm == "clean" else [epochs]
    history = pretrain(encoder, data.train_images, epochs=epochs, seed=seed, arm=arm, noise_std=noisy,
                       device=device, batch_size=batch_size, lr=lr, checkpoint_dir=folder,
                       checkpoint_epochs=saves, progress=progress)
    probe = train_probe(encoder, data.train_images, data.train_labels, data.test_images, data.test_labels,
                        epochs=budget.probe_epochs, seed=seed, noise_std=noisy, device=device,
                        batch_size=batch_size, lr=lr, progress=progress)
    result = {"arm": arm, "seed": seed, "test_accuracy": probe["test_accuracy"], "probe": probe,
              "pretrain": history, "pretrain_wall_s": history.pop("wall_s")}
    if arm == "curriculum":
        result["initialised_from"] = checkpoint_path(folder, "clean", budget.switch_epoch).name
    atomic_write_json(folder / f"{arm}.json", result)
    return result


def run_repetition(data: ToyData, seed: int, budget: Budget, folder: Path, device: torch.device,
                   noise_std: float = 0.4, batch_size: int = 256, lr: float = 1e-4, progress: bool = True) -> dict:
    """Run (or finish) the three arms of repetition ``seed`` in ``folder``; return and save its summary."""
    make_folder(folder)
    start = time.perf_counter()
    arms = {}
    for arm in ARMS:
        done = folder / f"{arm}.json"
        if done.is_file():
            arms[arm] = json.loads(done.read_text())
            continue
        arms[arm] = _run_arm(arm, data, seed, budget, folder, device, noise_std, batch_size, lr, progress)
    summary = {
        "seed": seed,
        "accuracy": {arm: arms[arm]["test_accuracy"] for arm in ARMS},
        "arm_wall_s": {arm: arms[arm]["pretrain_wall_s"] + arms[arm]["probe"]["wall_s"] for arm in ARMS},
        "wall_s_this_call": time.perf_counter() - start,
        "device": str(device),
        "data_source": data.source,
        "budget": budget.to_dict(),
    }
    atomic_write_json(folder / RESULT_NAME, summary)
    return summary
