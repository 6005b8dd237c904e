"""Linear probe on the frozen toy encoder: Linear(32, 10), cross-entropy, Adam, no augmentation."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from toy_mnist.model import linear_probe
from toy_mnist.views import noise_spec, noisy_copy
from utils.seeding import torch_generator, torch_seed

ENCODE_CHUNK = 8192


@torch.no_grad()
def encode(encoder: torch.nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Embed a CPU split [N, 784] with the frozen encoder, in chunks, on ``device``."""
    encoder.eval()
    return torch.cat([encoder(images[i:i + ENCODE_CHUNK].to(device)) for i in range(0, len(images), ENCODE_CHUNK)])


def seeded_probe(seed: int, device: torch.device) -> torch.nn.Linear:
    """A freshly initialised probe whose weights depend only on ``seed`` (global RNG state is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed(seed, "probe-init"))
        probe = linear_probe()
    return probe.to(device)


@torch.no_grad()
def accuracy(probe: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return float((probe(features).argmax(dim=1) == labels).float().mean().item() * 100.0)


def train_probe(
    encoder: torch.nn.Module,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    epochs: int,
    seed: int,
    noise_std: float | None,
    device: torch.device,
    batch_size: int = 256,
    lr: float = 1e-4,
    progress: bool = True,
) -> dict:
    """Train a linear probe on the frozen ``encoder`` and return its final test accuracy (percent).

    With ``noise_std`` set, train images get a fresh noise draw every epoch and the test images one fixed draw
    (both seeded by ``seed`` only, so every arm of a repetition is probed on the same noisy images).
    """
    start = time.perf_counter()
    spec = noise_spec(noise_std) if noise_std is not None else None
    test_inputs = test_images if spec is None else noisy_copy(test_images, spec, seed, "probe", "test-noise")
    test_features, test_targets = encode(encoder, test_inputs, device), test_labels.to(device)
    train_targets = train_labels.to(device)
    clean_features = encode(encoder, train_images, device) if spec is None else None
    probe = seeded_probe(seed, device)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr)
    epoch_loss = float("nan")
    for epoch in tqdm(range(1, epochs + 1), desc="probe", unit="epoch", disable=not progress, leave=False):
        features = clean_features if clean_features is not None else encode(
            encoder, noisy_copy(train_images, spec, seed, "probe", "train-noise", epoch), device)
        order = torch.randperm(len(features), generator=torch_generator(seed, "probe", "order", epoch)).to(device)
        total, batches = torch.zeros((), device=device), 0
        for first in range(0, len(order), batch_size):
            index = order[first:first + batch_size]
            loss = F.cross_entropy(probe(features[index]), train_targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            batches += 1
        epoch_loss = float(total / max(batches, 1))
    return {
        "epochs": epochs,
        "noisy": spec is not None,
        "final_train_loss": epoch_loss,
        "test_accuracy": accuracy(probe, test_features, test_targets),
        "wall_s": time.perf_counter() - start,
    }
