"""The toy encoder (bias-free MLP 784-128-ReLU-32) and its linear probe."""

from __future__ import annotations

from torch import nn

INPUT_DIM = 28 * 28
HIDDEN_DIM = 128
EMBED_DIM = 32
NUM_CLASSES = 10


class MLPHead(nn.Module):
    """Linear(784, 128, no bias) -> ReLU -> Linear(128, 32, no bias).

    The parameter names (``net.0.weight``, ``net.2.weight``) match the paper's released state dicts.
    """

    def __init__(self, input_dim: int = INPUT_DIM, hidden_dim: int = HIDDEN_DIM, embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden_dim, bias=False),
            nn.ReLU(),
            nn.Linear(hidden_dim, embed_dim, bias=False),
        )

    def forward(self, x):  # type: ignore[no-untyped-def]
        """Embed flattened images [B, 784] (any leading shape is flattened) into [B, 32]."""
        return self.net(x.flatten(1))


def linear_probe(embed_dim: int = EMBED_DIM, num_classes: int = NUM_CLASSES) -> nn.Linear:
    """The probe: Linear(32, 10) with bias."""
    return nn.Linear(embed_dim, num_classes)
