"""The curriculum's other denoisers (a self-calibrated Gaussian blur, Zero-Shot Noise2Noise, none) and the
ablation's recipe plan and table, against direct computations on tiny data."""

import csv
import json
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from dinov2.eval.results import make_result
from exps import denoiser_ablation_table as table
from Neighbor2Neighbor import denoise, gaussian_blur, train
from Neighbor2Neighbor.gaussian_blur import GaussianBlur, blur_image, self_supervised_losses
from Neighbor2Neighbor.weights import load_checkpoint, load_denoiser
from Neighbor2Neighbor.zs_n2n import ZeroShotNet, pair_downsample, zs_n2n_loss
from tests.environment import command_env
from utils.image_io import load_rgb, save_png_atomic

REPO = Path(__file__).resolve().parents[1]


def _smooth_image(size: int = 48, seed: int = 0) -> np.ndarray:
    """A smooth RGB image in [0.2, 0.8]: low-frequency blobs, so that some blur helps and too much hurts."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((6, 6, 3))
    image = ndimage.zoom(coarse, (size / 6, size / 6, 1), order=3)
    return (0.2 + 0.6 * (image - image.min()) / (image.max() - image.min())).astype(np.float32)


def test_blur_equals_scipy_gaussian_filter_per_channel():
    image = np.random.default_rng(1).random((17, 23, 3)).astype(np.float32)
    for sigma in (0.5, 1.3, 3.0):
        expected = np.stack([ndimage.gaussian_filter(image[..., c].astype(np.float64), sigma, mode="nearest",
                                                     truncate=4.0) for c in range(3)], axis=-1)
        np.testing.assert_allclose(blur_image(image, sigma), expected, atol=2e-6)
    with pytest.raises(ValueError, match="sigma"):
        GaussianBlur(3, 3, 0.0)


def test_sigma_chosen_on_noisy_images_is_near_the_clean_optimum():
    sigmas = [0.3, 0.6, 1.0, 1.5, 2.0, 3.0, 4.0]
    clean = [_smooth_image(seed=s) for s in range(4)]
    noisy = [c + np.random.default_rng(10 + i).normal(0, 0.15, c.shape).astype(np.float32)
             for i, c in enumerate(clean)]
    losses = self_supervised_losses(noisy, sigmas)
    true_error = [np.mean([np.mean((blur_image(n, s) - c) ** 2) for n, c in zip(noisy, clean)]) for s in sigmas]
    chosen, oracle = int(np.argmin(losses)), int(np.argmin(true_error))
    assert abs(chosen - oracle) <= 1 and 0 < chosen < len(sigmas) - 1  # an interior choice next to the optimum
    # the loss is the J-invariant one: scikit-image's masked blur against the noisy image, averaged over images
    from skimage.restoration import denoise_invariant
    direct = np.mean([np.mean((denoise_invariant(n, blur_image, denoiser_kwargs={"sigma": sigmas[2],
                                                                                 "channel_axis": -1}) - n) ** 2)
                      for n in noisy])
    assert losses[2] == pytest.approx(direct, rel=1e-5)


def test_blur_cli_writes_a_denoiser_that_denoise_py_applies(tmp_path, capsys):
    noisy = tmp_path / "noisy"
    for i in range(6):
        image = _smooth_image(32, seed=i) + np.random.default_rng(i).normal(0, 0.15, (32, 32, 3))
        save_png_atomic((np.clip(image, 0, 1) * 255).round().astype(np.uint8), noisy / "a" / f"{i}.png")
    args = ["--data-dir", str(noisy), "--output-dir", str(tmp_path / "blur"), "--images", "4", "--quiet"]
    assert gaussian_blur.main(args) == 0
    record = json.loads((tmp_path / "blur" / "calibration.json").read_text())
    assert record["images_used"] == 4
    assert record["sigma"] == record["sigmas"][int(np.argmin(record["self_supervised_loss"]))]
    model = load_denoiser(tmp_path / "blur" / "last.pt")
    assert isinstance(model, GaussianBlur) and float(model.sigma) == record["sigma"]
    capsys.readouterr()
    assert gaussian_blur.main(args) == 0 and "already chosen" in capsys.readouterr().out
    assert gaussian_blur.main(args[:-3] + ["--images", "0"]) == 2
    assert denoise.main(["--weights", str(tmp_path / "blur" / "last.pt"), "--src", str(noisy), "--output-dir",
                         str(tmp_path / "out"), "--num-workers", "0", "--quiet"]) == 0
    source = load_rgb(noisy / "a" / "0.png").astype(np.float32) / 255
    expected = np.floor(np.clip(blur_image(source, record["sigma"]), 0, 1) * 255 + 0.5)
    np.testing.assert_array_equal(load_rgb(tmp_path / "out" / "a" / "0.png"), expected)


def test_pair_downsample_and_the_zs_n2n_loss_against_direct_sums():
    x = torch.rand(2, 3, 4, 6, generator=torch.Generator().manual_seed(0))  # not a ramp: its two halves differ
    first, second = pair_downsample(x)
    assert first[0, 1, 1, 2].item() == pytest.approx((x[0, 1, 2, 5] + x[0, 1, 3, 4]).item() / 2)
    assert second[0, 1, 1, 2].item() == pytest.approx((x[0, 1, 2, 4] + x[0, 1, 3, 5]).item() / 2)

    def f(z):  # a stand-in denoiser with a known form
        return 0.5 * z + 0.1

    terms = zs_n2n_loss(f, x)
    d1, d2 = first.numpy(), second.numpy()
    whole = f(x)
    w1 = (whole[..., 0::2, 1::2] + whole[..., 1::2, 0::2]) / 2
    w2 = (whole[..., 0::2, 0::2] + whole[..., 1::2, 1::2]) / 2
    residual = (np.mean((d1 - f(d2)) ** 2) + np.mean((d2 - f(d1)) ** 2)) / 2
    consistency = (np.mean((f(d1) - w1.numpy()) ** 2) + np.mean((f(d2) - w2.numpy()) ** 2)) / 2
    assert terms.reconstruction.item() == pytest.approx(residual, rel=1e-5)
    assert terms.regularizer.item() == pytest.approx(consistency, rel=1e-5)
    assert terms.total.item() == pytest.approx(residual + consistency, rel=1e-5)
    net = ZeroShotNet(3, 3, 8)
    torch.nn.init.zeros_(net.last.weight), torch.nn.init.zeros_(net.last.bias)
    assert torch.equal(net(x), x)  # it predicts the noise: with no noise predicted it returns its input


def test_train_py_fits_zs_n2n_and_refuses_to_resume_as_another_objective(tmp_path, capsys):
    noisy = tmp_path / "noisy"
    for i in range(8):
        save_png_atomic(np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8), noisy / f"{i}.png")
    args = ["--data-dir", str(noisy), "--output-dir", str(tmp_path / "zs"), "--objective", "zs_n2n", "--epochs",
            "1", "--batch-size", "4", "--patch-size", "16", "--n-feature", "8", "--num-workers", "0", "--quiet"]
    assert train.main(args) == 0
    checkpoint = load_checkpoint(tmp_path / "zs" / "last.pt")
    assert checkpoint["model_config"] == {"arch": "zs_n2n", "in_channels": 3, "out_channels": 3, "features": 8}
    assert isinstance(load_denoiser(tmp_path / "zs" / "last.pt"), ZeroShotNet)
    record = json.loads((tmp_path / "zs" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["reg_weight"] == 1.0 and record["loss"] == pytest.approx(record["loss_rec"] + record["loss_reg"])
    neighbor = [a if a != "zs_n2n" else "neighbor2neighbor" for a in args]
    assert train.main(neighbor) == 2
    assert "objective" in capsys.readouterr().err


def test_a_checkpoint_of_an_unknown_architecture_is_refused_by_name(tmp_path):
    torch.save({"model": {}, "model_config": {"arch": "bm3d", "in_channels": 3}}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=r"odd\.pt.*unknown denoiser architecture 'bm3d'"):
        load_denoiser(tmp_path / "odd.pt")


def _plan(tmp_path, **variables):
    env = command_env(DATA_ROOT=str(tmp_path / "data"), OUT=str(tmp_path / "out"), **variables)
    done = subprocess.run(["bash", "exps/denoiser_ablation.sh", "--dry-run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    return done, [shlex.split(line[2:]) for line in done.stdout.splitlines() if line.startswith("+ ")]


def _value(command, key):
    return next(a.split("=", 1)[1] for a in command if a.startswith(key + "="))


def test_the_recipe_plans_nc_and_nct_per_denoiser_on_the_right_trees(tmp_path):
    done, plan = _plan(tmp_path, DENOISERS="blur none", SEEDS="0 1")
    assert done.returncode == 0, done.stderr
    trainings = {cmd[cmd.index("--output-dir") + 1]: cmd for cmd in plan if cmd[:3] == ["python", "-m", "dinov2.train"]}
    out, noisy = tmp_path / "out", str(tmp_path / "data" / "noisy_mnist5k-gauss100")
    for seed in (0, 1):
        runs = out / f"seed_{seed}"
        assert _value(trainings[str(runs / "dinov2_noisy")], "train.dataset_path") == noisy
        blurred = _value(trainings[str(runs / "blur" / "dinov2_denoised")], "train.dataset_path")
        assert blurred.startswith(noisy + "-denoised-")
        assert str(runs / "none" / "dinov2_denoised") not in trainings  # no denoiser: the baseline is the source
        for kind, source, teacher in (("blur", runs / "blur" / "dinov2_denoised", blurred),
                                      ("none", runs / "dinov2_noisy", noisy)):
            nc, nct = trainings[str(runs / kind / "nc")], trainings[str(runs / kind / "nct")]
            assert _value(nc, "curriculum.branch_from") == _value(nct, "curriculum.branch_from") == f"{source}@7"
            assert _value(nc, "train.dataset_path") == _value(nct, "train.dataset_path") == noisy
            assert _value(nct, "nct.denoised_dataset_path") == teacher
    calibrations = [cmd for cmd in plan if cmd[:3] == ["python", "-m", "Neighbor2Neighbor.gaussian_blur"]]
    assert len(calibrations) == 1 and calibrations[0][calibrations[0].index("--data-dir") + 1] == noisy + "/train"
    assert plan[-1][:2] == ["python", "exps/denoiser_ablation_table.py"] and plan[-1][-2:] == ["blur", "none"]
    assert not [cmd for cmd in plan if "dinov2.eval.robustness" in cmd]  # only with ROBUSTNESS=1
    _, plan = _plan(tmp_path, DENOISERS="none", SEEDS="0", ROBUSTNESS="1")
    scored = {cmd[cmd.index("--pretrained-weights") + 1]: cmd[cmd.index("--output-dir") + 1]
              for cmd in plan if "dinov2.eval.robustness" in cmd}
    runs, evals = out / "seed_0", out / "seed_0" / "eval"
    assert scored == {str(runs / "dinov2_noisy"): str(evals / "dinov2_noisy" / "robustness"),
                      str(runs / "none" / "nc"): str(evals / "none" / "nc" / "robustness"),
                      str(runs / "none" / "nct"): str(evals / "none" / "nct" / "robustness")}
    refused, _ = _plan(tmp_path, DENOISERS="n2n bm3d")
    assert refused.returncode == 2 and "bm3d" in refused.stderr


def _linear(method, top1, knn):
    results = {"heads": {"h": {"val": {"top1": top1, "top5": 99.0}}},
               "selected": {"name": "h", "selected_on": "holdout"},
               "final": {"top1": top1, "top5": 99.0}, "best_on_val": {"name": "h", "top1": top1, "top5": 99.0},
               "knn": {"k": {"20": {"top1": knn, "top5": 90.0}}}}
    return make_result("linear", "c.pth", {}, results, method=method, noise="gauss100", iteration=9, epoch=1.0)


def _robustness(clean, method="nc"):
    noises = {"gauss100": {"psnr": 11.0, "logreg": clean - 10, "knn": clean - 9}}
    results = {"clean": {"logreg": clean, "knn": clean + 1}, "noises": noises,
               "areas": {"logreg": {"gauss": clean - 10}, "knn": {"gauss": clean - 9}}}
    return make_result("robustness", "c.pth", {}, results, method=method, noise="gauss100", iteration=9, epoch=1.0)


def _write(path, result):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


def test_the_table_pairs_gains_by_seed_over_the_complete_seeds(tmp_path, capsys):
    root = tmp_path / "out"
    scores = {0: (50.0, 40.0, 55.0, 44.0), 1: (52.0, 41.0, 58.0, 47.0), 2: (49.0, 39.0, 53.0, 42.0)}
    for seed, (base, base_knn, nc, nc_knn) in scores.items():
        _write(root / f"seed_{seed}" / "eval" / "dinov2_noisy" / "r.json", _linear("dinov2", base, base_knn))
        for arm, top1, knn in (("nc", nc, nc_knn), ("nct", base + 1, base_knn), ("n2n_dinov2", base, base_knn - 2)):
            _write(root / f"seed_{seed}" / "eval" / "blur" / arm / "r.json", _linear(arm, top1, knn))
    # a seed still running (its NCT not probed yet) is left out of every cell
    _write(root / "seed_3" / "eval" / "dinov2_noisy" / "r.json", _linear("dinov2", 10.0, 10.0))
    _write(root / "seed_3" / "eval" / "blur" / "nc" / "r.json", _linear("nc", 90.0, 90.0))
    _write(root / "denoisers" / "blur" / "psnr.json", {"denoised_psnr": 17.5, "noisy_psnr": 11.2})
    for seed, clean in ((0, 60.0), (1, 64.0)):  # robustness of the blur's NC and of DINOv2 at two of the seeds
        _write(root / f"seed_{seed}" / "eval" / "blur" / "nc" / "robustness" / "r.json", _robustness(clean))
        _write(root / f"seed_{seed}" / "eval" / "dinov2_noisy" / "robustness" / "r.json",
               _robustness(clean - 5, "dinov2"))
    assert table.main([str(root), "--denoisers", "blur"]) == 0
    assert "seed(s) 3 left out" in capsys.readouterr().out
    assert "over 2 seed(s)" in (root / "report" / "denoiser_ablation_robustness.md").read_text()
    robust = list(csv.reader((root / "report" / "denoiser_ablation_robustness.csv").read_text().splitlines()))
    assert robust[0] == ["arm", "clean", "area gauss", "mean area", "mean area - DINOv2's"]
    assert robust[1] == ["DINOv2 on noisy images", "57.0 [31.6, 82.4]", "47.0 [21.6, 72.4]", "47.0 [21.6, 72.4]", "-"]
    assert robust[2][0] == "NC, Gaussian blur (self-calibrated)"
    assert robust[2][1].startswith("62.0 [") and robust[2][2].startswith("52.0 [")  # means over the two seeds
    assert robust[2][4] == "+5.0 [+5.0, +5.0]"  # paired by seed: 50 - 45 and 54 - 49
    summary = json.loads((root / "report" / "denoiser_ablation.json").read_text())
    assert summary["seeds"] == [0, 1, 2] and summary["dinov2"]["linear"]["mean"] == pytest.approx(151 / 3)
    gains = summary["denoisers"]["blur"]["gains"]
    assert gains["nc:linear"]["n"] == 3 and gains["nc:linear"]["mean"] == pytest.approx(5.0)
    assert gains["nc:linear"]["low"] < 5.0 < gains["nc:linear"]["high"]
    assert gains["nc:knn"]["mean"] == pytest.approx(4.333, abs=1e-3)  # paired: (4 + 6 + 3) / 3
    assert gains["nct:linear"]["mean"] == pytest.approx(1.0) and gains["nct:linear"]["std"] == pytest.approx(0.0)
    assert gains["n2n_dinov2:knn"]["mean"] == pytest.approx(-2.0) and summary["denoisers"]["blur"]["psnr"] == 17.5
    rows = list(csv.reader((root / "report" / "denoiser_ablation.csv").read_text().splitlines()))
    assert rows[1][:3] == ["Gaussian blur (self-calibrated)", "17.50", "+0.0 [+0.0, +0.0]"]
    assert rows[1][4].startswith("+5.0 [")
    assert (root / "report" / "denoiser_ablation.png").stat().st_size > 0
    assert table.main([str(root), "--denoisers", "blur", "zs_n2n"]) == 2  # a denoiser without its results
