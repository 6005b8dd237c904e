"""Config loading: unknown keys, wrong types and inconsistent values fail at once, naming the key."""

import subprocess
import sys
from pathlib import Path

import pytest

from dinov2.hub import config_from_yaml
from dinov2.utils.checks import check_config
from dinov2.utils.config import CONFIGS_DIR, ConfigError, config_to_yaml, derived_values, load_config
from tests.test_dinov2_curriculum_recipes import REQUIRED

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((CONFIGS_DIR / "train").glob("*.yaml"))


def _run_train(tmp_path, *overrides, config="smoke_cpu.yaml"):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "dinov2.train", "--config-file", str(CONFIGS_DIR / "train" / config),
               "--output-dir", str(out), f"train.dataset_path={tmp_path}", *overrides]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    return result, out


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.lrr=1", "optim.lrr"),
        ("optim.epochs=abc", "optim.epochs"),
        ("crops.global_crops_size=20", "crops.global_crops_size"),
        ("train.dataset_path=/nonexistent/tree", "train.dataset_path"),
    ],
)
@pytest.mark.slow
def test_bad_config_exits_non_zero_naming_the_key(tmp_path, override, key):
    (tmp_path / "train").mkdir()
    result, out = _run_train(tmp_path, override)
    assert result.returncode == 2, result.stderr
    assert key in result.stderr
    assert not out.exists()  # nothing was created before the error


def test_unknown_key_in_recipe_file_names_the_file(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("student:\n  archh: vit_small\n")
    with pytest.raises(ConfigError, match=r"student\.archh.*bad\.yaml"):
        load_config(recipe)


def test_types_are_converted_or_rejected():
    cfg = load_config(None, ["optim.base_lr=1", "train.seed=7"])
    assert isinstance(cfg.optim.base_lr, float) and cfg.train.seed == 7
    with pytest.raises(ConfigError, match="student.qkv_bias"):
        load_config(None, ["student.qkv_bias=maybe"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(None, ["optim.epochs"])


@pytest.mark.parametrize(
    "override, key",
    [
        ("crops.local_crops_size=12", "crops.local_crops_size"),
        ("train.centering=kmeans", "train.centering"),
        ("optim.warmup_epochs=5", "optim.warmup_epochs"),
        ("train.batch_size_per_gpu=1", "train.batch_size_per_gpu"),
        ("student.arch=vit_huge", "student.arch"),
        ("crops.global_crops_scale=[0.9,0.1]", "crops.global_crops_scale"),
        ("crops.hflip_probability=1.5", "crops.hflip_probability"),
        ("crops.color_jitter_probability=-0.1", "crops.color_jitter_probability"),
        ("student.arch=resnet18", "student.arch"),  # iBOT on, and a ResNet has no patch tokens to mask
    ],
)
def test_cross_field_checks_name_the_key(override, key):
    cfg = load_config(CONFIGS_DIR / "train" / "smoke_cpu.yaml", [override])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(cfg)


def test_a_resnet_trains_dino_only_without_masks():
    resnet = ["student.arch=resnet18", "ibot.loss_weight=0"]
    cfg = load_config(CONFIGS_DIR / "train" / "smoke_cpu.yaml", resnet)
    with pytest.raises(ConfigError, match=r"ibot\.mask_sample_probability"):
        check_config(cfg)
    check_config(load_config(CONFIGS_DIR / "train" / "smoke_cpu.yaml", [*resnet, "ibot.mask_sample_probability=0"]))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_validates(recipe):
    # a method overlay (method_*.yaml) goes after a size recipe, which names the data
    overlay = recipe.stem.startswith("method_")
    cfg = load_config([CONFIGS_DIR / "train" / "imagenet100_vits16.yaml", recipe] if overlay else recipe,
                      REQUIRED.get(recipe.stem, []))
    check_config(cfg)
    assert cfg.train.dataset_path


def test_paper_recipe_values():
    cfg = load_config(CONFIGS_DIR / "train" / "imagenet100_vits16.yaml")
    derived = derived_values(cfg, world_size=1)
    assert cfg.student.arch == "vit_small" and cfg.train.batch_size_per_gpu == 40
    assert derived["lr"] == pytest.approx(7.906e-4, rel=1e-3)
    assert derived["total_iterations"] == 250_000
    cfg = load_config(CONFIGS_DIR / "train" / "imagenet1k_vitb16.yaml")
    assert derived_values(cfg, world_size=4)["lr"] == pytest.approx(2.83e-3, rel=1e-3)


def test_saved_config_round_trips_without_its_derived_section():
    cfg = load_config(CONFIGS_DIR / "train" / "tiny_cpu.yaml", ["optim.epochs=3"])
    text = config_to_yaml(cfg, {"lr": 0.123})
    assert "derived:" in text
    again = config_from_yaml(text)
    assert again == cfg


def _leaf_keys(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_every_default_key_is_read_by_the_code():
    """A key that no code reads is a silent no-op for users (like upstream's dead ``train.seed``)."""
    from omegaconf import OmegaConf

    source = "\n".join(
        path.read_text() for path in (REPO / "dinov2").rglob("*.py") if "configs" not in path.parts
    )
    defaults = OmegaConf.to_container(OmegaConf.load(CONFIGS_DIR / "ssl_default_config.yaml"))
    dead = [key for key in _leaf_keys(defaults)
            if f".{key.rsplit('.', 1)[-1]}" not in source and f'"{key.rsplit(".", 1)[-1]}"' not in source]
    assert dead == []


def test_recipes_build_on_base_files_and_several_config_files_merge_in_order(tmp_path):
    (tmp_path / "size.yaml").write_text("student:\n  patch_size: 8\noptim:\n  epochs: 7\n")
    (tmp_path / "more.yaml").write_text("optim:\n  epochs: 9\n  warmup_epochs: 2\n")
    (tmp_path / "sub").mkdir()
    recipe = tmp_path / "sub" / "recipe.yaml"
    recipe.write_text("_base_: [../size.yaml, ../more.yaml]\noptim:\n  warmup_epochs: 3\n")
    cfg = load_config(recipe)  # bases in order, then the recipe's own keys
    assert (cfg.student.patch_size, cfg.optim.epochs, cfg.optim.warmup_epochs) == (8, 9, 3)
    cfg = load_config([recipe, tmp_path / "size.yaml"], ["optim.warmup_epochs=1"])
    assert (cfg.optim.epochs, cfg.optim.warmup_epochs) == (7, 1)


def test_base_file_errors_name_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("_base_: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("_base_: {x: 1}\n")
    with pytest.raises(ConfigError, match="_base_"):
        load_config(tmp_path / "d.yaml")


def test_branch_recipes_combine_with_a_size_recipe():
    tiny = CONFIGS_DIR / "train" / "tiny_cpu.yaml"
    cfg = load_config([tiny, CONFIGS_DIR / "train" / "branch_nct.yaml"],
                      ["optim.epochs=3", "train.dataset_path=data/noisy", "curriculum.branch_from=runs/den@7",
                       "nct.denoised_dataset_path=data/den"])
    from dinov2.train.curriculum import build_phases

    (phase,) = build_phases(cfg)
    assert (phase.epochs, phase.init_from, phase.nct, phase.denoised_dataset_path) == (3, "runs/den@7", True, "data/den")
    assert cfg.student.arch == "vit_tiny_4blocks" and cfg.nct.enabled


def test_an_unknown_compile_backend_is_refused_before_training():
    cfg = load_config(CONFIGS_DIR / "train" / "smoke_cpu.yaml", ["train.compile=true", "train.compile_backend=nope"])
    with pytest.raises(ConfigError, match=r"train\.compile_backend.*'nope'"):
        check_config(cfg)
    cfg = load_config(CONFIGS_DIR / "train" / "smoke_cpu.yaml", ["train.compile=true", "train.compile_backend=aot_eager"])
    check_config(cfg)


def test_an_override_that_is_not_yaml_is_one_error_naming_it():
    override = "curriculum.phases=[{dataset_path: ${train.dataset_path}, epochs: 1}]"  # ${...} unquoted in a flow map
    with pytest.raises(ConfigError, match=r"override 'curriculum.phases=.*' is not valid YAML .*quote values"):
        load_config(overrides=[override])
    quoted = load_config(overrides=["curriculum.phases=[{dataset_path: '${train.dataset_path}', epochs: 1}]"])
    assert quoted.curriculum.phases[0].dataset_path == quoted.train.dataset_path
