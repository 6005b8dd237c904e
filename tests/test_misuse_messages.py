"""Misuse answered by one line naming the file, key or option (exit 2; exit 1 for a run that diverges), never by
a traceback, a silently ignored request or an error that names some other path."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import hubconf
from dinov2.eval import instance_recog, linear, robustness
from dinov2.eval.arguments import build_parser
from dinov2.export import main as export_main
from dinov2.models.backbone_weights import BackboneWeightsError
from dinov2.train.train import main as train_main
from dinov2.utils.config import CONFIGS_DIR, load_config
from tests.environment import REPO, command_env
from tests.eval_fixtures import make_separable_tree, make_teacher_export
from toy_mnist.run import main as toy_main
from utils.dataset_index import DatasetError, build_index
from utils.generate_noise import main as generate_main
from utils.image_tree import TreeSpecError, open_tree
from utils.make_toy_dataset import main as make_toy_main
from utils.make_toy_retrieval import build_toy_retrieval

SMOKE = str(CONFIGS_DIR / "train" / "smoke_cpu.yaml")


def _error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line or "Traceback" in line]
    assert len(lines) == 1 and "error: " in lines[0], lines
    return lines[0]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return make_teacher_export(tmp_path_factory.mktemp("teacher") / "run", 9)


def test_labels_that_are_not_utf8_name_the_file_and_line(tmp_path, digit_tree, capsys):
    root = tmp_path / "tree"
    (root / "train" / "0").mkdir(parents=True)
    (root / "train" / "0" / "a.png").write_bytes((digit_tree / "train" / "0").iterdir().__next__().read_bytes())
    (root / "labels.txt").write_bytes(b"1,one\n0,z\xe9ro\n")
    with pytest.raises(DatasetError, match=re.escape(f"{root / 'labels.txt'}:2: not UTF-8 text (byte 0xe9")):
        build_index(root, ["train"])
    assert train_main(["--config-file", SMOKE, "--output-dir", str(tmp_path / "run"),
                       f"train.dataset_path={root}"]) == 2
    assert "labels.txt:2: not UTF-8" in _error_line(capsys)


@pytest.mark.parametrize("arguments, says", [
    (["--val-fraction", "1.5"], "--val-fraction must lie strictly between 0 and 1"),
    (["--val-fraction", "0"], "--val-fraction must lie strictly between 0 and 1"),
    (["--size", "10"], "--size 10: the digits are 28x28"),
    (["--limit", "0"], "--limit 0: keep at least one digit"),
    (["--limit", "2", "--val-fraction", "0.1"], "puts 0 in val and 2 in train"),
])
def test_the_toy_dataset_refuses_bad_arguments_before_writing(arguments, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        make_toy_main(["--output-dir", str(tmp_path / "digits"), *arguments])
    assert stop.value.code == 2 and says in capsys.readouterr().err and not (tmp_path / "digits").exists()


def test_the_toy_mlp_diverging_is_one_line_with_exit_1(tmp_path, capsys):
    assert toy_main(["--output-dir", str(tmp_path / "toy"), "--seeds", "0", "--epochs", "2", "--probe-epochs", "1",
                     "--budget", "epochs", "--device", "cpu", "--batch-size", "256", "--threads", "1", "--quiet",
                     "--lr", "1e6"]) == 1
    line = _error_line(capsys)
    assert "seed 0: clean: non-finite loss" in line and "lower --lr (now 1e+06)" in line


def test_retrieval_names_an_empty_image(tmp_path, teacher, capsys):
    build_toy_retrieval(tmp_path / "data", "toy", size=32)
    empty = sorted((tmp_path / "data" / "toy" / "jpg").glob("*.jpg"))[0]
    empty.write_bytes(b"")
    assert instance_recog.main(["--pretrained-weights", str(teacher), "--data-root", str(tmp_path / "data"),
                                "--dataset", "toy", "--output-dir", str(tmp_path / "eval"), "--crop-size", "32",
                                "--resize-size", "32", "--num-workers", "0", "--quiet"]) == 2
    assert _error_line(capsys).endswith(f"cannot read image {empty}: the file is empty (0 bytes)")


def test_a_folder_after_the_root_that_leaves_the_tree_is_refused_when_parsed(tmp_path):
    (tmp_path / "clean" / "train").mkdir(parents=True)
    (tmp_path / "clean" / "val").mkdir()
    for spelling in (f"noisy:gauss100:{tmp_path}/clean/train:../val", f"noisy:gauss100:{tmp_path}/clean:x/../../y"):
        with pytest.raises(TreeSpecError, match="leaves the tree"):
            open_tree(spelling)
    assert open_tree(f"noisy:gauss100:{tmp_path}/clean:train/../val").folder.resolve() == tmp_path / "clean" / "val"


def test_a_root_whose_name_holds_a_colon(tmp_path):
    (tmp_path / "a:b" / "train").mkdir(parents=True)
    tree = open_tree(f"noisy:gauss100:{tmp_path}/a:b")
    assert tree.folder == tmp_path / "a:b" and tree.is_dir()
    assert open_tree(f"noisy:gauss100:{tmp_path}/a:b:train").folder == tmp_path / "a:b" / "train"
    missing = open_tree(f"noisy:gauss100:{tmp_path}/c:d")
    with pytest.raises(DatasetError, match=re.escape(f"read as the tree {tmp_path}/c and the folder 'd' inside it: "
                                                     f"':' separates them, and neither")):
        build_index(missing)


@pytest.mark.parametrize("value", ["noisy:", "noisy:gauss100:"])
def test_an_override_ending_in_a_colon_is_a_tree_spelling_not_a_mapping(value, tmp_path, capsys):
    assert load_config(overrides=[f"train.dataset_path={value}"]).train.dataset_path == value
    assert train_main(["--config-file", SMOKE, "--output-dir", str(tmp_path / "run"),
                       f"train.dataset_path={value}"]) == 2
    line = _error_line(capsys)
    assert "'train.dataset_path'" in line and f"tree '{value}': expected noisy:SETTING" in line


def test_arch_and_patch_size_that_contradict_the_file_are_refused(teacher, tmp_path, capsys):
    data = make_separable_tree(tmp_path / "data", num_classes=2, train_per_class=4, val_per_class=2)
    says = f"{teacher} holds a vit_tiny_4blocks with patch size 8, not the vit_small with patch size 8 asked for"
    assert export_main(["--weights", str(teacher), "--arch", "vit_small", "--output-dir", str(tmp_path / "x")]) == 2
    assert says in _error_line(capsys) and not (tmp_path / "x").exists()
    assert linear.main(["--pretrained-weights", str(teacher), "--arch", "vit_small", "--train-dataset",
                        str(data / "train"), "--val-dataset", str(data / "val"), "--output-dir", str(tmp_path / "e"),
                        "--crop-size", "32", "--num-workers", "0", "--quiet"]) == 2
    assert says in _error_line(capsys)
    assert export_main(["--weights", str(teacher), "--arch", "vit_tiny_4blocks", "--patch-size", "8",
                        "--output-dir", str(tmp_path / "same")]) == 0  # what the file holds: accepted


def test_the_official_entries_name_a_file_of_another_kind(tmp_path, teacher):
    import torch

    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(BackboneWeightsError, match=re.escape(f"{tmp_path / 'list.pt'} holds a list")):
        hubconf.dinov2_vits14(weights=str(tmp_path / "list.pt"))
    with pytest.raises(BackboneWeightsError, match=re.escape(f"{teacher} holds an encoder export")):
        hubconf.dinov2_vits14(weights=str(teacher))


def test_a_negative_worker_count_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        generate_main(["--src", str(tmp_path), "--noise", "gauss100", "--out-prefix", str(tmp_path / "n"),
                       "--num-workers", "-3"])
    assert stop.value.code == 2 and "--num-workers/--workers: must be 0 or more, got -3" in capsys.readouterr().err


def test_a_recipe_refuses_a_second_noise_setting(tmp_path):
    env = command_env(OUT=str(tmp_path / "out"), DATA_ROOT=str(tmp_path / "data"))
    shown = subprocess.run(["bash", "exps/quickstart.sh", "gauss100", "shot3", "--dry-run"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 2 and "unexpected argument shot3: it takes one NOISE setting" in shown.stderr
    assert not list(tmp_path.iterdir())


def test_the_recipes_final_hint_can_be_pasted_into_a_shell(tmp_path):
    marker = tmp_path / "injected"
    evals = f"{tmp_path}/evals $(touch {marker})"
    env = command_env(NOISES="gauss100", ABLATION_NOISES="", RUNS=str(tmp_path / "runs"), EVALS=evals)
    shown = subprocess.run(["bash", "exps/linear_probe.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=60)
    hint = re.search(r"tables: (python exps/report\.py .*) --out outputs/report\)", shown.stdout)
    assert shown.returncode == 0 and hint, shown.stdout[-500:]
    echoed = subprocess.run(["bash", "-c", f"printf '%s\\n' {hint.group(1)[len('python exps/report.py '):]}"],
                            capture_output=True, text=True, timeout=60)
    assert echoed.stdout.strip() == evals and not marker.exists()


@pytest.mark.parametrize("tool", ["linear", "robustness"])
def test_a_noise_label_is_spelled_as_one_and_the_older_noise_option_says_so(tool, capsys):
    parse = build_parser("linear", "").parse_args if tool == "linear" else robustness.parse_args
    common = ["--pretrained-weights", "w", "--train-dataset", "t", "--output-dir", "o",
              *(["--val-dataset", "v"] if tool == "linear" else ["--clean-val", "v"])]
    assert parse([*common, "--noise-label", "gauss100"]).noise == "gauss100"
    with pytest.raises(SystemExit) as stopped:
        parse([*common, "--noise", "gauss100"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "--noise is now --noise-label" in error and "the images are read as given" in error
