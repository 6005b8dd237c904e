"""Unit tests of the toy MLP experiment: loss, shapes, augmentation, noise streams, budget, IDX reader."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from toy_mnist.augment import affine, augment_batch, resized_crop, sample_affine_params, sample_crop_params
from toy_mnist.budget import make_budget
from toy_mnist.data import MnistDataError, find_idx_files, load_idx_mnist, read_idx
from toy_mnist.loss import covariance_term, invariance_term, toy_ssl_loss
from toy_mnist.model import MLPHead, linear_probe
from toy_mnist.views import noise_spec, noisy_copy


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as an IDX file, gzip-compressed when the name ends in .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)


# ---- loss -------------------------------------------------------------------------------------------------------

def test_identical_views_with_identity_covariance_give_zero_loss():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    terms = toy_ssl_loss(z, z.clone())
    assert terms.invariance.item() == 0.0
    assert terms.covariance.item() == pytest.approx(0.0, abs=1e-7)
    assert terms.total.item() == pytest.approx(0.0, abs=1e-7)


def test_loss_terms_match_hand_computed_values():
    z1, z2 = torch.zeros(4, 2), torch.ones(4, 2)
    # Each pair differs by 1 in both dimensions: squared distance 2. Stacked and centred every entry is +-0.5, so
    # the covariance is 0.25 everywhere: (0.25 - 1)^2 twice plus 0.25^2 twice = 1.25.
    assert invariance_term(z1, z2).item() == pytest.approx(2.0)
    assert covariance_term(z1, z2).item() == pytest.approx(1.25)
    assert toy_ssl_loss(z1, z2).total.item() == pytest.approx(2.0 + 0.5 * 1.25)
    assert toy_ssl_loss(z1, z2, covariance_weight=1.0).total.item() == pytest.approx(3.25)


def test_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        toy_ssl_loss(torch.zeros(4, 2), torch.zeros(4, 3))


# ---- shapes -----------------------------------------------------------------------------------------------------

def test_encoder_and_probe_shapes():
    model = MLPHead()
    assert {name: tuple(p.shape) for name, p in model.named_parameters()} == {
        "net.0.weight": (128, 784), "net.2.weight": (32, 128)}
    assert model(torch.rand(5, 1, 28, 28)).shape == (5, 32)
    assert model(torch.rand(5, 784)).shape == (5, 32)
    probe = linear_probe()
    assert probe(torch.rand(5, 32)).shape == (5, 10) and probe.bias is not None


def test_augment_batch_shape_and_range():
    images = torch.rand(16, 1, 28, 28)
    out = augment_batch(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, augment_batch(images, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, augment_batch(images, torch.Generator().manual_seed(1)))
    assert not torch.equal(out, images)
    with pytest.raises(ValueError, match="square images"):
        augment_batch(torch.rand(2, 1, 28, 27))


# ---- augmentation matches torchvision for the same parameters --------------------------------------------------

def test_batched_resized_crop_matches_torchvision():
    images = torch.rand(24, 1, 28, 28)
    params = sample_crop_params(24, 28, torch.Generator().manual_seed(1))
    ours = resized_crop(images, params)
    for k in range(24):
        box = [int(v[k]) for v in (params.top, params.left, params.height, params.width)]
        reference = TF.resized_crop(images[k], *box, [28, 28], antialias=True)
        torch.testing.assert_close(ours[k], reference, atol=1e-5, rtol=0)


def test_batched_affine_matches_torchvision():
    images = torch.rand(24, 1, 28, 28)
    params = sample_affine_params(24, 28, torch.Generator().manual_seed(2))
    ours = affine(images, params)
    for k in range(24):
        reference = TF.affine(images[k], angle=float(params.angle[k]),
                              translate=[int(params.translate_x[k]), int(params.translate_y[k])],
                              scale=float(params.scale[k]), shear=[float(params.shear_x[k]), 0.0], fill=0.0)
        # Nearest-neighbour ties may round differently in the last float bit: allow a stray pixel.
        assert (ours[k] != reference).sum() <= 1


def test_augmentation_parameters_follow_the_transform_ranges():
    crop = sample_crop_params(4000, 28, torch.Generator().manual_seed(3))
    area = crop.height * crop.width
    assert area.min() >= 0.8 * 784 * 0.9 and area.max() <= 784
    assert (crop.top >= 0).all() and (crop.top + crop.height <= 28).all()
    assert (crop.left >= 0).all() and (crop.left + crop.width <= 28).all()
    assert crop.width.unique().numel() > 3 and crop.left.unique().numel() > 1
    aff = sample_affine_params(4000, 28, torch.Generator().manual_seed(3))
    assert aff.angle.abs().max() <= 15 and aff.angle.abs().max() > 14
    assert set(aff.translate_x.unique().tolist()) <= {-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0}
    assert aff.scale.min() >= 0.95 and aff.scale.max() <= 1.05 and aff.shear_x.abs().max() <= 10


# ---- noise streams -----------------------------------------------------------------------------------------------

def test_noisy_copies_are_pure_functions_of_their_key():
    images = torch.full((300, 784), 0.5)
    spec = noise_spec(0.4)
    first = noisy_copy(images, spec, 0, "noisy", "noise", 3, 0)
    assert torch.equal(first, noisy_copy(images, spec, 0, "noisy", "noise", 3, 0))
    assert not torch.equal(first, noisy_copy(images, spec, 0, "noisy", "noise", 3, 1))  # other view
    assert not torch.equal(first, noisy_copy(images, spec, 0, "noisy", "noise", 4, 0))  # other epoch
    assert not torch.equal(first, noisy_copy(images, spec, 1, "noisy", "noise", 3, 0))  # other seed
    assert first.min() >= 0 and first.max() <= 1
    # Mid-grey pixels are rarely clipped at std 0.4: the spread stays close to 0.4.
    assert float(first.std()) == pytest.approx(0.4 * 0.83, abs=0.05)


# ---- budget ------------------------------------------------------------------------------------------------------

def test_step_budget_matches_paper_steps_and_is_identity_on_full_mnist():
    embedded = make_budget("steps", 4000)
    assert (embedded.pretrain_epochs, embedded.switch_epoch, embedded.probe_epochs) == (734, 441, 734)
    assert abs(embedded.to_dict()["pretrain_steps"] - 50 * 235) <= 16
    full = make_budget("steps", 60000)
    assert (full.pretrain_epochs, full.switch_epoch, full.curriculum_noisy_epochs, full.probe_epochs) == (50, 30, 20, 50)
    literal = make_budget("epochs", 4000)
    assert (literal.pretrain_epochs, literal.switch_epoch, literal.probe_epochs) == (50, 30, 50)
    assert make_budget("epochs", 4000, epochs=2, probe_epochs=1).switch_epoch == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "time"}, "--budget"),
    ({"epochs": 10, "switch_epoch": 10}, "--switch-epoch"),
    ({"epochs": 0}, "--epochs"),
])
def test_bad_budget_options_name_the_option(kwargs, message):
    arguments = {"mode": "epochs", "train_size": 4000, **kwargs}
    with pytest.raises(ValueError, match=message):
        make_budget(**arguments)


# ---- IDX reader --------------------------------------------------------------------------------------------------

def test_read_idx_round_trip_plain_and_gzip(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    labels = np.array([7, 0, 9])
    write_idx(tmp_path / "imgs", images)
    write_idx(tmp_path / "labels.gz", labels)
    assert np.array_equal(read_idx(tmp_path / "imgs"), images.astype(np.uint8))
    assert read_idx(tmp_path / "imgs").shape == (3, 28, 28)
    assert read_idx(tmp_path / "labels.gz").tolist() == [7, 0, 9]


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(MnistDataError, match="bad"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((2, 28, 28)))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-5])
    with pytest.raises(MnistDataError, match="data bytes"):
        read_idx(tmp_path / "short")


def test_idx_mnist_in_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(raw / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (6, 28, 28)))
    write_idx(raw / "train-labels-idx1-ubyte", np.arange(6) % 10)
    write_idx(raw / "t10k-images-idx3-ubyte", np.full((2, 28, 28), 255))
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.array([3, 4]))
    data = load_idx_mnist(tmp_path)
    assert data.train_images.shape == (6, 784) and data.test_images.shape == (2, 784)
    assert data.test_images.max().item() == 1.0 and data.test_labels.tolist() == [3, 4]
    assert "IDX" in data.source and str(raw) in data.source
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MnistDataError, match="t10k-labels-idx1-ubyte"):
        find_idx_files(tmp_path)
