"""exps/report.py and exps/generate_instance_recog_script.py on hand-made result files."""

import csv
import json

import pytest

from dinov2.eval.results import ResultError, make_result
from exps import generate_instance_recog_script as generator
from exps import report


def linear_result(method, noise, epoch, honest, best, checkpoint="ckpt.pth"):
    heads = {"h1": {"val": {"top1": best, "top5": 99.0}}, "h2": {"val": {"top1": honest, "top5": 98.0}}}
    results = {"heads": heads, "selected": {"name": "h2", "selected_on": "holdout"},
               "final": {"top1": honest, "top5": 98.0}, "best_on_val": {"name": "h1", "top1": best, "top5": 99.0},
               "knn": {"k": {"10": {"top1": honest - 5, "top5": 90.0}, "20": {"top1": honest - 4, "top5": 91.0}}}}
    return make_result("linear", checkpoint, {}, results, method=method, noise=noise,
                       iteration=int(epoch * 10) - 1, epoch=epoch)


def retrieval_result(method, noise, dataset, medium, label):
    block = lambda v: {"mAP": v, "mP": {"1": 50.0}}  # noqa: E731
    results = {"dataset": dataset, "easy": block(medium + 10), "medium": block(medium), "hard": block(medium - 10)}
    return make_result("instance_recog", "c.pth", {"arm": "noisy"}, results, method=method, noise=noise,
                       iteration=9, epoch=1.0, checkpoint_label=label)


def write(path, result):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


@pytest.fixture
def results_root(tmp_path):
    root = tmp_path / "results"
    # file names say nothing: the fields decide
    write(root / "a" / "r1.json", linear_result("dinov2", "gauss100", 1.0, 50.0, 52.0))
    write(root / "a" / "r2.json", linear_result("dinov2", "gauss100", 2.0, 55.0, 54.0, "last.pth"))
    write(root / "b" / "r3.json", linear_result("nc", "gauss100", 2.0, 68.0, 69.0))
    write(root / "b" / "r4.json", linear_result("dinov2", "shot1", 2.0, 40.0, 41.0))
    write(root / "c" / "x.json", retrieval_result("dinov2", "gauss100", "roxford5k", 30.0, "final"))
    write(root / "c" / "y.json", retrieval_result("dinov2", "gauss100", "rparis6k", 45.0, "final"))
    write(root / "c" / "other.json", {"not": "a result"})
    return root


def read_csv(path):
    with open(path) as handle:
        return list(csv.reader(handle))


def test_report_builds_tables_and_figures(results_root, tmp_path):
    out = tmp_path / "report"
    written = report.build_report([results_root], out)
    assert len(written["results"]) == 6
    table = read_csv(out / "linear_top1.csv")
    assert table[0] == ["method", "gauss100", "shot1"]
    assert table[1] == ["dinov2", "55.00", "40.00"]  # last epoch, honest selection
    assert table[2] == ["nc", "68.00", "-"]
    paper = read_csv(out / "linear_top1_paper_best.csv")
    assert paper[1][1] == "54.00"  # best checkpoint (epoch 2) on val
    assert read_csv(out / "knn_top1.csv")[1][1] == "51.00"  # k = 20 at the last epoch
    retrieval = read_csv(out / "retrieval.csv")
    assert retrieval[0][4:] == ["roxford5k E", "roxford5k M", "roxford5k H", "rparis6k E", "rparis6k M", "rparis6k H"]
    assert retrieval[1] == ["dinov2", "gauss100", "noisy", "final", "40.00", "30.00", "20.00", "55.00", "45.00",
                            "35.00"]
    assert "| dinov2 | 55.00 | 40.00 |" in (out / "linear_top1.md").read_text()
    assert (out / "linear_curve_gauss100.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "linear_curve_shot1.png").is_file()


def test_methods_table_puts_each_ssl_method_arms_side_by_side(results_root, tmp_path):
    assert not report.write_method_table(report.collect_results([results_root]), tmp_path / "none")  # DINOv2 only
    for name, (method, top1) in {"d1": ("dino", 57.9), "d2": ("nc_dino", 62.1), "d3": ("n2n_dino", 62.5),
                                 "i1": ("ibot", 56.9), "n1": ("n2n_dinov2", 69.0), "t1": ("nct", 70.0)}.items():
        write(results_root / "methods" / f"{name}.json", linear_result(method, "gauss100", 2.0, top1, top1))
    out = tmp_path / "report"
    assert "ssl_methods" in report.build_report([results_root], out)["tables"]
    table = read_csv(out / "ssl_methods.csv")
    assert table[0] == ["method", "noise", "on noisy data", "w/ NC", "N2N + method"]
    assert table[1:] == [["dinov2", "gauss100", "55.00", "68.00", "69.00"], ["dinov2", "shot1", "40.00", "-", "-"],
                         ["dino", "gauss100", "57.90", "62.10", "62.50"], ["ibot", "gauss100", "56.90", "-", "-"]]
    assert report.method_and_arm("nct") is None and report.method_and_arm("n2n_simclr") == ("simclr", "n2n")


def test_summary_puts_probe_knn_and_retrieval_side_by_side(results_root, tmp_path):
    out = tmp_path / "report"
    report.build_report([results_root], out)
    summary = read_csv(out / "summary.csv")
    assert summary[0] == ["noise", "method", "linear top-1", "linear top-1 (best on val)", "k-NN top-1",
                          "roxford5k mAP M", "roxford5k mAP H", "rparis6k mAP M", "rparis6k mAP H"]
    assert summary[1] == ["gauss100", "dinov2", "55.00", "54.00", "51.00", "30.00", "20.00", "45.00", "35.00"]
    assert summary[2] == ["gauss100", "nc", "68.00", "69.00", "64.00", "-", "-", "-", "-"]
    assert summary[3][:3] == ["shot1", "dinov2", "40.00"]


def test_page_shows_tables_figures_and_includes(results_root, tmp_path):
    out = tmp_path / "report"
    psnr = tmp_path / "psnr.json"
    psnr.write_text(json.dumps({"images": 10, "noisy_psnr": 11.2, "best_blur_psnr": 14.1, "best_blur_sigma": 0.8,
                                "denoised_psnr": 15.0}))
    toy = tmp_path / "toy" / "results.md"
    toy.parent.mkdir()
    toy.write_text("| arm | accuracy |\n| --- | --- |\n| noisy | 63.0 % |\n")
    figure = tmp_path / "toy" / "probe_accuracy.png"
    figure.write_bytes(b"\x89PNG fake")
    argv = [str(results_root), "--out", str(out), "--page", "Mini <paper>", "--n2n-psnr", str(psnr),
            "--include", str(toy), str(figure)]
    assert report.main(argv) == 0
    markdown = (out / "index.md").read_text()
    assert markdown.startswith("# Mini <paper>")
    assert markdown.index("Summary") < markdown.index("Denoiser") < markdown.index("Linear probe top-1")
    assert "| Neighbor2Neighbor | 15.00 |" in markdown and "## toy" in markdown
    assert "![probe_accuracy](probe_accuracy.png)" in markdown
    assert "![linear_curve_gauss100](linear_curve_gauss100.png)" in markdown
    assert (out / "probe_accuracy.png").read_bytes() == figure.read_bytes()
    page = (out / "index.html").read_text()
    assert "<title>Mini &lt;paper&gt;</title>" in page
    assert "<td>nc</td><td>68.00</td>" in page and "<th>method</th>" in page
    assert page.count("<img ") == len(list(out.glob("*.png"))) == 3
    assert "| ---" not in page and "<td>---</td>" not in page


def test_page_options_are_checked(results_root, tmp_path, capsys):
    with pytest.raises(SystemExit):
        report.main([str(results_root), "--out", str(tmp_path / "r"), "--include", str(tmp_path)])
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    assert report.main([str(results_root), "--out", str(tmp_path / "r"), "--page", "t", "--include",
                        str(notes)]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert report.main([str(results_root), "--out", str(tmp_path / "r"), "--page", "t", "--n2n-psnr",
                        str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # checked before any table was written


def test_report_stops_on_an_invalid_result(results_root, tmp_path):
    broken = linear_result("dinov2", "gauss50", 1.0, 50.0, 52.0)
    del broken["results"]["final"]
    write(results_root / "broken.json", broken)
    with pytest.raises(ResultError, match="broken.json"):
        report.build_report([results_root], tmp_path / "r")
    assert report.main([str(results_root), "--out", str(tmp_path / "r2"), "--skip-invalid"]) == 0


def test_generator_writes_best_and_final_commands(results_root, tmp_path):
    script = tmp_path / "ir.sh"
    argv = [str(results_root / "a"), str(results_root / "b"), "--data-root", "D", "--script", str(script),
            "--denoised-methods", "nc"]
    assert generator.main(argv) == 0
    lines = [line for line in script.read_text().splitlines() if line.startswith("python")]
    assert len(lines) == 3 * 2 * 2  # three runs x {best, final} x two datasets
    dinov2_gauss = [line for line in lines if "--method dinov2" in line and "--noise gauss100" in line]
    assert any("--checkpoint-label best" in line and "last.pth" in line for line in dinov2_gauss)
    nc_lines = [line for line in lines if "--method nc" in line]
    assert all("--denoised-root D/roxford5k_gauss100" in line or "--denoised-root D/rparis6k_gauss100" in line
               for line in nc_lines)
