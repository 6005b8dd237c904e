"""The training loader's worker count follows the CPUs a rank may use, and a /dev/shm too small for its batches is
named before the first batch."""

import warnings

import pytest

from dinov2.train import loader_resources
from dinov2.train.loader_resources import batch_bytes, capped_workers, shared_memory_warning
from dinov2.utils.config import load_config


@pytest.mark.parametrize("requested, cpus, ranks, expected", [
    (10, 64, 1, 10),  # enough CPUs: the request stands
    (10, 8, 1, 7),    # one CPU stays with the main process
    (10, 32, 4, 7),   # four ranks on the node share its 32 CPUs
    (10, 2, 1, 1),
    (10, 1, 4, 1),
    (0, 1, 1, 0),
])
def test_workers_are_capped_to_the_rank_share_of_the_cpus(requested, cpus, ranks, expected):
    workers, warning = capped_workers(requested, cpus, ranks)
    assert workers == expected
    assert (warning is None) == (workers == requested)
    if warning:
        assert "train.num_workers=10" in warning and f"{cpus} CPU" in warning


def test_a_batch_of_the_imagenet_recipe_is_about_half_a_mib_an_image():
    cfg = load_config()  # 2 x 224 + 8 x 96 crops of uint8 pixels
    per_image = 2 * 3 * 224 ** 2 + 8 * 3 * 96 ** 2
    assert batch_bytes(cfg) == cfg.train.batch_size_per_gpu * per_image
    assert batch_bytes(cfg, paired=True) == cfg.train.batch_size_per_gpu * (per_image + 2 * 3 * 224 ** 2)


def test_shared_memory_too_small_for_the_batches_in_flight_is_named():
    batch = 128 * 2 * 2**20
    warning = shared_memory_warning(batch, workers=10, free_bytes=64 * 2**20)
    assert "/dev/shm" in warning and "5120 MiB" in warning and "--shm-size" in warning
    assert shared_memory_warning(batch, workers=10, free_bytes=8 * 2**30) is None
    assert shared_memory_warning(batch, workers=0, free_bytes=0) is None  # no worker, no shared memory
    assert shared_memory_warning(batch, workers=2, free_bytes=None) is None  # nothing to read


def test_the_loader_takes_the_capped_count_and_warns(monkeypatch):
    cfg = load_config(overrides=["train.num_workers=6"])
    monkeypatch.setattr(loader_resources, "usable_cpus", lambda: 4)
    monkeypatch.setattr(loader_resources, "free_shared_memory", lambda: 2**40)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.warns(UserWarning, match="using 1 loader worker"):
        assert loader_resources.loader_workers(cfg) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setattr(loader_resources, "usable_cpus", lambda: 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loader_resources.loader_workers(cfg) == 6
