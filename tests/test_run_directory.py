"""The run directory is a component of its own (dinov2/train/run_directory.py), and every method's model fulfils
the one contract the training loop relies on (dinov2/train/meta_arch.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dinov2.train.meta_arch import MetaArch, build_meta_arch
from dinov2.train.nct import NCTMetaArch
from dinov2.train.run_directory import RunDirectory
from dinov2.hub import load_backbone
from dinov2.utils.checkpoint import (CONFIG_FILENAME, encoder_export_path, list_checkpoints, list_encoder_exports,
                                     load_checkpoint, write_encoder_export)
from dinov2.utils.config import CONFIGS_DIR, ConfigError, config_to_yaml, load_config
from tests.test_contrastive_methods import SMALL_BACKBONE, SMALL_HEADS
from tests.test_dinov2_method_recipes import SMOKE, SMOKE_SIZES, TRAIN_CONFIGS
from utils import distributed
from utils.weights_file import describe_contents


def _run_directory(path: Path, *overrides: str, total: int = 5) -> RunDirectory:
    cfg = load_config(SMOKE, ["evaluation.eval_period_iterations=2", "train.max_to_keep=2", *overrides])
    return RunDirectory(path, cfg, distributed.setup("cpu"), "the: config\n", total_iterations=total)


def test_exports_are_due_every_period_and_at_the_end_and_a_missing_one_is_written_once(tmp_path):
    run_dir = _run_directory(tmp_path / "run")
    assert [it for it in range(5) if run_dir.is_export_iteration(it)] == [1, 3, 4]
    assert run_dir.missing_exports(5) == [1, 3, 4]
    calls = []

    def state_of() -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"backbone.w": torch.ones(2)}

    assert run_dir.export_if_missing(3, state_of) and not run_dir.export_if_missing(3, state_of)
    assert not run_dir.export_if_missing(2, state_of)  # not due
    assert len(calls) == 1 and run_dir.missing_exports(5) == [1, 4]
    export = torch.load(encoder_export_path(tmp_path / "run", 3), weights_only=True)
    assert export["config"] == "the: config\n" and torch.equal(export["teacher"]["backbone.w"], torch.ones(2))


@pytest.mark.parametrize("method, encoder", [("dinov2", "teacher"), ("simclr", "student")])
def test_an_export_is_named_for_the_encoder_it_holds(tmp_path, method, encoder):
    run_dir = _run_directory(tmp_path / "run", f"method.name={method}")
    run_dir.write_encoder_export(1, {"backbone.w": torch.ones(2)})
    export = encoder_export_path(tmp_path / "run", 1, encoder)
    assert list_encoder_exports(tmp_path / "run") == [export]
    state = torch.load(export, weights_only=True)
    assert set(state) == {encoder, "iteration", "config"}
    assert describe_contents(state) == f"an encoder export (eval/training_<it>/{encoder}_checkpoint.pth)"


def test_an_older_contrastive_run_keeps_its_teacher_named_exports(tmp_path):
    """Before exports were named for their encoder, a SimCLR run wrote its student as teacher_checkpoint.pth: it is
    still the run's export (listed, loaded, not written again on resume)."""
    cfg = load_config([SMOKE, TRAIN_CONFIGS / "method_simclr.yaml"], [*SMALL_HEADS, *SMALL_BACKBONE["simclr"]])
    model = build_meta_arch(cfg)
    state = {key: value.detach() for key, value in model.student.state_dict().items()}
    older = write_encoder_export(tmp_path / "run", 1, "teacher", state, config_to_yaml(cfg))
    run_dir = RunDirectory(tmp_path / "run", cfg, distributed.setup("cpu"), config_to_yaml(cfg), total_iterations=2)
    assert list_encoder_exports(tmp_path / "run") == [older]
    assert run_dir.missing_exports(2) == [] and not run_dir.export_if_missing(1, lambda: state)
    loaded = load_backbone(tmp_path / "run").state_dict()
    assert all(torch.equal(value, state[f"backbone.{key}"]) for key, value in loaded.items())


def test_checkpoints_carry_the_config_and_only_the_newest_are_kept(tmp_path):
    run_dir = _run_directory(tmp_path / "run")
    assert run_dir.newest_checkpoint() is None
    for iteration in range(3):
        run_dir.save_checkpoint(iteration, {"iteration": iteration + 1})
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["model_0000002.pth", "model_0000001.pth"]
    path, state = run_dir.newest_checkpoint()
    assert path.name == "model_0000002.pth" and state["iteration"] == 3 and state["config"] == "the: config\n"
    assert load_checkpoint(path)["iteration"] == 3


def test_opening_writes_the_config_and_refuses_a_resume_with_another_one(tmp_path):
    run_dir = _run_directory(tmp_path / "run")
    with run_dir.opened():
        assert (tmp_path / "run" / CONFIG_FILENAME).read_text() == "the: config\n"
        print("inside")
    assert "inside" in (tmp_path / "run" / "log.txt").read_text()
    real = _run_directory(tmp_path / "real")
    real.config_yaml = (CONFIGS_DIR / "train" / "smoke_cpu.yaml").read_text()
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / CONFIG_FILENAME).write_text("optim:\n  base_lr: 1.0\n")
    real.save_checkpoint(0, {"iteration": 1})
    with pytest.raises(ConfigError, match="optim.base_lr"):
        with real.opened():
            pass


METHODS = [("dino", ()), ("ibot", ()), ("dinov2", ()), ("simclr", SMALL_HEADS), ("mocov3", SMALL_HEADS),
           ("simsiam", SMALL_HEADS)]


@pytest.mark.parametrize("method, overrides", METHODS)
def test_every_method_builds_through_the_one_factory_and_fulfils_the_contract(method, overrides):
    overlay = [] if method == "dinov2" else [TRAIN_CONFIGS / f"method_{method}.yaml"]
    sizes = list(SMOKE_SIZES) if method in ("dino", "ibot", "dinov2") else list(SMALL_BACKBONE[method])
    cfg = load_config([SMOKE, *overlay], [*sizes, *overrides])
    model = build_meta_arch(cfg)
    assert isinstance(model, MetaArch), type(model).__name__
    assert set(model.student_forward) == set(model.student)
    nct = load_config([SMOKE, *overlay], [*sizes, *overrides, "nct.enabled=true"])
    if method in ("dino", "ibot", "dinov2"):
        assert isinstance(build_meta_arch(nct), NCTMetaArch)
