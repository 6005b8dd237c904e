"""The robustness benchmark: one head scored across noise settings, its PSNRs and areas against direct
computations, and k-NN on the clean val images equal to the k-NN probe's."""

from __future__ import annotations

import numpy as np
import pytest

from dinov2.eval.knn import main as knn_main
from dinov2.eval.results import load_result
from dinov2.eval.noise_curves import family_areas
from dinov2.eval.robustness import main as robustness_main
from exps import report
from tests.eval_fixtures import make_separable_tree, make_teacher_export
from utils.dataset_index import load_split
from utils.image_io import load_rgb
from utils.metrics import psnr
from utils.noise import noisy_image, parse_noise


def test_the_area_of_a_family_is_its_mean_accuracy_over_its_psnr_span():
    points = {"gauss50": (17.0, 60.0), "gauss255": (6.0, 20.0), "gauss100": (11.0, 50.0), "shot3": (18.0, 40.0)}
    areas = family_areas({setting: {"psnr": x, "top1": y} for setting, (x, y) in points.items()}, "top1")
    trapezoids = (20.0 + 50.0) / 2 * 5.0 + (50.0 + 60.0) / 2 * 6.0
    assert areas == {"gauss": pytest.approx(trapezoids / 11.0), "shot": 40.0}


def test_one_head_is_scored_on_clean_and_noisy_val_images(tmp_path, capsys):
    checkpoint = make_teacher_export(tmp_path / "run", 9)
    data = make_separable_tree(tmp_path / "data", num_classes=3, train_per_class=6, val_per_class=4)
    out = tmp_path / "out"
    args = ["--pretrained-weights", str(checkpoint), "--train-dataset", str(data / "train"), "--clean-val",
            str(data / "val"), "--noises", "gauss100", "speckle0.4", "gauss255", "--output-dir", str(out),
            "--crop-size", "32", "--nb-knn", "5", "--logreg-c", "1", "100", "--holdout-fraction", "0.34",
            "--num-workers", "0", "--quiet"]
    assert robustness_main(args) == 0
    (path,) = out.glob("robustness_*.json")
    # a rerun of the same request keeps the result; another request is refused, naming the option
    written = path.read_bytes()
    capsys.readouterr()
    assert robustness_main(args) == 0 and "exists" in capsys.readouterr().out and path.read_bytes() == written
    assert robustness_main(args[:args.index("--nb-knn")] + ["--nb-knn", "3"] + args[args.index("--nb-knn") + 2:]) == 2
    assert "--nb-knn" in capsys.readouterr().err and path.read_bytes() == written
    stored = load_result(path)  # an evaluation result of the schema
    assert stored["protocol"] == "robustness" and stored["iteration"] == 9 and path.name == "robustness_training_9.json"
    result = stored["results"]
    assert list(result["noises"]) == ["gauss100", "speckle0.4", "gauss255"]
    samples = load_split(data, "val").samples
    clean = [load_rgb(data / rel) for rel, _ in samples]
    direct = np.mean([psnr(c, noisy_image(c, parse_noise("gauss100"), 42, rel)) for c, (rel, _) in zip(clean, samples)])
    assert result["noises"]["gauss100"]["psnr"] == pytest.approx(direct, abs=1e-6)
    assert result["noises"]["gauss255"]["psnr"] < result["noises"]["gauss100"]["psnr"]
    assert set(result["areas"]["knn"]) == {"gauss", "speckle"} and path.with_suffix(".png").stat().st_size > 1000
    assert "| gauss255 |" in path.with_suffix(".md").read_text()
    assert report.main([str(out), "--output-dir", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "robustness.md").read_text()
    assert "| area gauss | area speckle |" in table
    assert f"{result['areas']['logreg']['gauss']:.1f} / {result['areas']['knn']['gauss']:.1f}" in table
    assert (tmp_path / "report" / "robustness_curve.png").stat().st_size > 1000
    # each k-NN is the k-NN probe's on the same images, clean or noised on the fly
    for name, val in (("clean", str(data / "val")), ("gauss255", f"noisy:gauss255:{data}:val")):
        assert knn_main(["--pretrained-weights", str(checkpoint), "--train-dataset", str(data / "train"),
                         "--val-dataset", val, "--output-dir", str(tmp_path / name), "--crop-size", "32",
                         "--nb-knn", "5", "--num-workers", "0", "--quiet"]) == 0
        (knn_path,) = (tmp_path / name).glob("knn_*.json")
        expected = load_result(knn_path)["results"]["k"]["5"]["top1"]
        measured = result["clean"] if name == "clean" else result["noises"][name]
        assert measured["knn"] == pytest.approx(expected)


def test_an_unknown_noise_setting_is_refused_before_any_work(tmp_path, capsys):
    data = make_separable_tree(tmp_path / "data", num_classes=2, train_per_class=2, val_per_class=1)
    assert robustness_main(["--pretrained-weights", str(make_teacher_export(tmp_path / "run", 9)), "--train-dataset",
                            str(data / "train"), "--clean-val", str(data / "val"), "--noises", "blur3",
                            "--output-dir", str(tmp_path / "out")]) == 2
    assert "blur3" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_run_dir_is_refused_for_one_checkpoint_protocol(tmp_path, capsys):
    data = make_separable_tree(tmp_path / "data", num_classes=2, train_per_class=2, val_per_class=1)
    assert robustness_main(["--run-dir", str(tmp_path / "run"), "--train-dataset", str(data / "train"),
                            "--clean-val", str(data / "val"), "--output-dir", str(tmp_path / "out")]) == 2
    assert "--pretrained-weights" in capsys.readouterr().err
