"""NCT: the loss equals its terms computed by hand, weight 0 is NC exactly, the frozen teacher never changes, is
never trained and holds the teacher of the end of the denoised phase."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dinov2.data import PairedDataAugmentationDINO
from dinov2.train.data_setup import build_collate
from dinov2.train.run_files import read_metrics
from dinov2.train.nct import NCTMetaArch
from dinov2.train.train import main
from dinov2.utils.checkpoint import load_checkpoint
from dinov2.utils.config import CONFIGS_DIR, load_config
from utils.image_io import iter_image_files, load_rgb, save_png_atomic
from utils.make_toy_dataset import build_toy_dataset

SMOKE = CONFIGS_DIR / "train" / "smoke_cpu.yaml"
NC_KEYS = ("total_loss", "dino_local_crops_loss", "dino_global_crops_loss", "koleo_loss", "ibot_loss")
NCT_KEYS = ("nct_dino_local_crops_loss", "nct_dino_global_crops_loss", "nct_ibot_loss")


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """A noisy tree and a 'denoised' copy (same relative paths, different pixels)."""
    noisy, denoised = tmp_path_factory.mktemp("noisy"), tmp_path_factory.mktemp("denoised")
    build_toy_dataset(noisy, limit=2)
    (denoised / "labels.txt").write_text((noisy / "labels.txt").read_text())
    for split in ("train", "val"):
        for relpath in iter_image_files(noisy / split):
            image = load_rgb(noisy / split / relpath)
            save_png_atomic((255 - image // 2).astype(np.uint8), denoised / split / relpath)
    return noisy, denoised


def _argv(out: Path, *overrides: str) -> list[str]:
    return ["--config-file", str(SMOKE), "--output-dir", str(out), "train.OFFICIAL_EPOCH_LENGTH=2", *overrides]


def _curriculum(pair, nct: bool) -> str:
    noisy, denoised = pair
    second = f"{{dataset_path: '{noisy}', epochs: 1"
    second += f", nct: true, denoised_dataset_path: '{denoised}'}}" if nct else "}"
    return f"curriculum.phases=[{{dataset_path: '{denoised}', epochs: 1}}, {second}]"


@pytest.fixture(scope="module")
def nct_run(pair, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nct") / "run"
    assert main(_argv(out, _curriculum(pair, nct=True), "nct.enabled=true", "nct.weight=2.0")) == 0
    return out


def test_frozen_teacher_is_the_denoised_phase_teacher_and_never_changes(nct_run):
    end_of_denoised = load_checkpoint(nct_run / "model_0000001.pth")["model"]
    final = load_checkpoint(nct_run / "model_0000003.pth")
    model = final["model"]
    assert int(model["nct.initialized"]) == 1
    frozen = {k[len("nct.teacher."):]: v for k, v in model.items() if k.startswith("nct.teacher.")}
    assert frozen
    for key, value in frozen.items():
        assert torch.equal(value, end_of_denoised[f"teacher.{key}"]), key  # bit-identical after NCT training
    assert any(not torch.equal(model[f"teacher.{k}"], end_of_denoised[f"teacher.{k}"]) for k in frozen)
    n_student = sum(1 for k in model if k.startswith("student."))
    assert sum(len(g["params"]) for g in final["optimizer"]["param_groups"]) == n_student  # never optimised
    assert not torch.equal(model["nct.dino_loss.center"], end_of_denoised["dino_loss.center"])  # its own EMA


def test_with_a_batchnorm_head_the_frozen_teacher_keeps_its_statistics_and_the_live_one_moves(pair, tmp_path):
    out = tmp_path / "run"
    assert main(_argv(out, _curriculum(pair, nct=True), "nct.enabled=true", "dino.head_use_bn=true")) == 0
    end_of_denoised = load_checkpoint(out / "model_0000001.pth")["model"]
    model = load_checkpoint(out / "model_0000003.pth")["model"]
    running = [k for k in model if k.startswith("nct.teacher.dino_head.") and k.endswith("running_mean")]
    assert running
    for key in running:  # the frozen teacher runs in eval mode: its BatchNorm statistics stay the denoised ones
        live_key = key.replace("nct.teacher.", "teacher.")
        assert torch.equal(model[key], end_of_denoised[live_key]), key
        assert not torch.equal(model[live_key], end_of_denoised[live_key]), live_key  # the EMA teacher's follow
    assert all(np.isfinite(r["total_loss"]) for r in read_metrics(out))


def test_nct_terms_are_logged_in_the_nct_phase_only(nct_run):
    records = read_metrics(nct_run)
    assert [r["phase"] for r in records] == [0, 0, 1, 1]
    assert not any(k in records[0] for k in NCT_KEYS)
    for record in records[2:]:
        parts = [record[k] for k in NC_KEYS[1:] + NCT_KEYS]
        assert record["total_loss"] == pytest.approx(sum(parts))
        assert all(record[k] > 0 for k in NCT_KEYS)


@pytest.mark.slow
def test_weight_zero_is_exactly_nc(pair, tmp_path):
    nc, zero = tmp_path / "nc", tmp_path / "zero"
    assert main(_argv(nc, _curriculum(pair, nct=False))) == 0
    assert main(_argv(zero, _curriculum(pair, nct=True), "nct.enabled=true", "nct.weight=0.0",
                      "nct.blur_mode=upstream")) == 0  # the NC runs' augmentation
    for a, b in zip(read_metrics(nc), read_metrics(zero)):
        assert all(a[k] == b[k] for k in NC_KEYS), a["iteration"]
    a, b = load_checkpoint(nc / "model_0000003.pth")["model"], load_checkpoint(zero / "model_0000003.pth")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _tiny_batch(cfg) -> dict:
    rng = np.random.default_rng(0)
    transform = PairedDataAugmentationDINO(
        tuple(cfg.crops.global_crops_scale), tuple(cfg.crops.local_crops_scale), cfg.crops.local_crops_number,
        cfg.crops.global_crops_size, cfg.crops.local_crops_size)
    items = []
    for seed in range(3):
        noisy = Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
        denoised = Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
        items.append(((transform((noisy, denoised)), 0), seed))
    return build_collate(cfg)(items)


def _ce(targets: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    return -(targets * F.log_softmax(scores / 0.1, dim=-1)).sum(dim=-1)


@pytest.mark.parametrize("head", ["live", "frozen"])
def test_nct_loss_is_the_sum_of_its_terms_by_hand(head):
    cfg = load_config(SMOKE, ["student.patch_size=4", "nct.enabled=true", f"nct.head={head}",
                              "ibot.mask_sample_probability=1.0"])
    torch.manual_seed(0)
    model = NCTMetaArch(cfg)
    model.train()
    model.nct.copy_from_live(model)
    with torch.no_grad():  # make the frozen teacher, its heads and its centers differ from the live ones
        for param in model.nct.teacher.parameters():
            param.add_(0.05 * torch.randn_like(param))
        model.nct.dino_loss.center.normal_()
        model.nct.ibot_patch_loss.center.normal_()
    batch = _tiny_batch(cfg)
    weight, temp = 1.7, 0.05
    reference = copy.deepcopy(model)
    terms = model.compute_losses(batch, teacher_temp=temp, nct_weight=weight)
    plain = copy.deepcopy(reference).compute_losses(batch, teacher_temp=temp)
    for key in plain:
        assert torch.allclose(terms[key], plain[key], rtol=1e-5, atol=1e-6), key

    with torch.no_grad():
        out = reference.nct.teacher["backbone"](batch["collated_global_crops_denoised"], is_training=True)
        first, second = out["x_norm_clstoken"].chunk(2)
        patches = out["x_norm_patchtokens"].flatten(0, 1)[batch["mask_indices_list"]]
        head_owner = reference.teacher if head == "live" else reference.nct.teacher
        scores = head_owner["dino_head"](torch.cat((second, first, patches)))
        n_cls = 2 * first.shape[0]
        targets_cls = F.softmax((scores[:n_cls] - reference.nct.dino_loss.center) / temp, dim=-1).view(2, -1, scores.shape[-1])
        targets_patch = F.softmax((scores[n_cls:] - reference.nct.ibot_patch_loss.center.reshape(-1)) / temp, dim=-1)
    student = reference.student_outputs(batch)
    n_local = cfg.crops.local_crops_number
    n_terms = 2 + 2 * n_local
    local = sum(_ce(t, s).mean() for s in student.local_cls.chunk(n_local) for t in targets_cls) / n_terms
    global_ = _ce(targets_cls.flatten(0, 1), student.global_cls).mean() * 2 / n_terms
    masks = batch["collated_masks"]
    per_crop = 1.0 / masks.sum(dim=-1).clamp(min=1)
    weights = per_crop.unsqueeze(-1).expand_as(masks)[masks]
    ibot = (_ce(targets_patch, student.masked_patches) * weights).sum() / masks.shape[0]
    for key, value in (("nct_dino_local_crops_loss", local), ("nct_dino_global_crops_loss", global_),
                       ("nct_ibot_loss", ibot)):
        assert torch.allclose(terms[key], weight * value, rtol=1e-5, atol=1e-6), key
    assert "nct_koleo_loss" not in terms
    assert not any(p.requires_grad for p in model.nct.parameters()) and not model.nct.training


def test_single_phase_nct_with_an_explicit_frozen_teacher(pair, nct_run, tmp_path, monkeypatch):
    from dinov2.train import curriculum

    noisy, denoised = pair
    source = nct_run / "model_0000001.pth"
    out = tmp_path / "run"
    opened, real_load = [], curriculum.load_torch_file
    monkeypatch.setattr(curriculum, "load_torch_file",
                        lambda path, *a, **k: opened.append(path) or real_load(path, *a, **k))
    assert main(_argv(out, f"train.dataset_path={noisy}", "optim.epochs=1", "nct.enabled=true",
                      f"nct.denoised_dataset_path={denoised}", f"nct.teacher={source}",
                      "nct.update_centers=false")) == 0
    saved, final = load_checkpoint(source)["model"], load_checkpoint(out / "model_0000001.pth")["model"]
    for key in [k for k in final if k.startswith("nct.teacher.")]:
        assert torch.equal(final[key], saved[key[len("nct."):]]), key
    assert torch.equal(final["nct.dino_loss.center"], saved["dino_loss.center"])  # centers frozen on request
    assert all(NCT_KEYS[0] in r for r in read_metrics(out))
    assert opened == [source]  # nct.teacher told from a backbone once per launch, when the phases are built


def test_nct_without_a_denoised_tree_names_the_key(pair, tmp_path, capsys):
    assert main(_argv(tmp_path / "run", f"train.dataset_path={pair[0]}", "nct.enabled=true")) == 2
    assert "nct.denoised_dataset_path" in capsys.readouterr().err
