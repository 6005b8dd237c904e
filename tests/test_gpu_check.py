"""bench/gpu_check.sh: the --cpu-smoke run passes every check and measurement (2-rank gloo DDP included); a run with
no numerical tolerance fails its check, keeps going and still writes the JSON; without CUDA the script refuses."""

import json
import subprocess
from pathlib import Path

import pytest

from bench import gpu_check
from bench.gpu_checks import report
from tests.environment import command_env

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.sh"
# one thread per process: the run is tiny, and CI cores are often shared with other jobs
ENV = command_env(OMP_NUM_THREADS="1")


def run_script(*args: str, env: dict = ENV, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_cpu_smoke_run_passes_every_check_and_measurement(tmp_path):
    output = tmp_path / "results" / "gpu_check.json"
    result = run_script("--cpu-smoke", "--output-json", str(output))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads(output.read_text())
    assert {"device", "torch", "cuda", "gpus"} <= document.keys() and document["all_ok"] is True
    for name in report.ENTRIES:
        assert document[name]["ok"] is True, (name, document[name])
    for name in report.MEASUREMENTS:
        assert document[name]["images_per_s"] > 0, name
    ddp = document["ddp"]
    assert ddp["backend"] == "gloo" and ddp["world_size"] == 2 and ddp["max_rank_difference"] == 0.0
    assert ddp["ranks_had_different_batches"] and ddp["max_student_weight_change"] > 0
    assert document["flash_attention"]["forward_kernels"] == ["flash_cpu"]
    assert document["compile"]["backend"] == "aot_eager"
    training = document["dinov2_imagenet100"]
    assert training["step_tflop"] > 0 and 0 < training["mfu_vs_matmul"] and training["mfu_vs_datasheet"] is None
    assert list(document)[-1] == "all_ok" and not list(output.parent.glob(".*tmp-*"))  # atomic: no leftovers


@pytest.mark.slow
def test_zero_tolerance_fails_that_check_keeps_going_and_writes_the_json(tmp_path):
    output = tmp_path / "gpu_check.json"
    result = run_script("--cpu-smoke", "--only", "precision", "flash_attention", "--tolerance-scale", "0",
                        "--output-json", str(output))
    assert result.returncode == 1, result.stderr[-3000:]
    document = json.loads(output.read_text())
    assert document["precision"]["ok"] is False and document["precision"]["bf16"]["max_relative_difference"] > 0
    assert document["flash_attention"]["ok"] is True  # the next check still ran
    assert document["all_ok"] is False and "ddp" not in document
    assert "FAIL  precision" in result.stdout


def test_a_check_that_raises_is_recorded_in_one_line_and_the_rest_still_run(tmp_path, monkeypatch, capsys):
    def broken(settings):
        raise RuntimeError("first line\nCUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(gpu_check, "tasks", lambda: [(("precision",), broken), (("ddp",), None), (
        ("feature_extraction",), lambda settings: {"feature_extraction": {"ok": True, "images_per_s": 1.0}})])
    output = tmp_path / "out.json"
    assert gpu_check.main(["--cpu-smoke", "--output-json", str(output)]) == 1
    document = json.loads(output.read_text())
    assert document["precision"] == {"ok": False, "seconds": document["precision"]["seconds"],
                                     "error": "RuntimeError: CUDA error: an illegal memory access was encountered"}
    assert document["feature_extraction"]["ok"] is True and document["ddp"]["pending"] is True
    assert report.ddp_plan(output) == "2 120"


def test_a_ddp_launch_without_a_result_is_a_failed_check(tmp_path):
    output = tmp_path / "out.json"
    report.write(output, {"device": "cpu", "ddp": report.pending_ddp(2, "gloo", 120),
                          "precision": {"ok": True}})
    log = tmp_path / "ddp.log"
    log.write_text("starting\nRuntimeError: Connection reset by peer\n")
    document = report.merge_ddp(output, tmp_path / "missing.json", 124, log)
    assert document["ddp"]["ok"] is False and document["all_ok"] is False
    assert document["ddp"]["error"] == "torchrun timed out without a result: RuntimeError: Connection reset by peer"
    assert json.loads(output.read_text()) == document


@pytest.mark.slow
def test_without_cuda_the_script_refuses_in_one_line(tmp_path):
    output = tmp_path / "gpu_check.json"
    result = run_script("--quick", "--output-json", str(output), env={**ENV, "CUDA_VISIBLE_DEVICES": ""}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "no CUDA device: use --cpu-smoke"
    assert not output.exists()


def test_help_and_bad_options():
    shown = run_script("--help", timeout=30)
    assert shown.returncode == 0 and "--cpu-smoke" in shown.stdout and "Exit status" in shown.stdout
    bad = run_script("--cpu-smoke", "--no-such-option", timeout=60)
    assert bad.returncode == 2 and "--no-such-option" in bad.stderr


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H200", 989e12), ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA A100 80GB PCIe", 312e12), ("NVIDIA L40S", 362e12),
    ("NVIDIA A10", 125e12), ("NVIDIA A10G", None), ("NVIDIA H100 NVL", None), ("NVIDIA GeForce RTX 4090", None),
])
def test_datasheet_peaks_by_device_name(name, peak):
    from bench.gpu_checks.throughput import datasheet_bf16_peak

    assert datasheet_bf16_peak(name) == peak


@pytest.mark.parametrize("operator, kernel", [
    ("aten::_scaled_dot_product_flash_attention", "flash"),
    ("aten::_scaled_dot_product_flash_attention_backward", "flash"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "flash_cpu"),
    ("aten::_scaled_dot_product_efficient_attention", "efficient"),
    ("aten::_scaled_dot_product_cudnn_attention", "cudnn"),
    ("aten::_scaled_dot_product_attention_math", "math"),
    ("aten::mm", None),
])
def test_attention_kernels_are_told_apart_by_operator_name(operator, kernel):
    from bench.gpu_checks.attention import kernel_of

    assert kernel_of(operator) == kernel
