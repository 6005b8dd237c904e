"""The paper's settings are spelled once (utils/paper_facts.py): the training configs agree with them, and the
recipes read them instead of spelling them again."""

import re
import subprocess

import pytest

from dinov2.utils.checkpoint import encoder_export_dir, encoder_export_path
from dinov2.utils.config import CONFIGS_DIR, load_config
from tests.environment import REPO, command_env
from utils import paper_facts
from utils.noise import PAPER_NOISE_SETTINGS
from utils.paper_facts import EXPORT_ENCODERS

SCHEDULE = paper_facts.IMAGENET100
RECIPES = [p for pattern in ("exps/*.sh", "exps/lib/*.sh", "Neighbor2Neighbor/*.sh") for p in REPO.glob(pattern)]


def test_the_imagenet1k_configs_train_the_schedule_of_the_facts():
    schedule = paper_facts.IMAGENET1K
    branch_epochs = schedule.epochs - schedule.switch_epoch
    for name, epochs in (("vitb16", schedule.epochs), ("denoised", schedule.epochs), ("nc", branch_epochs),
                         ("nct", branch_epochs)):
        cfg = load_config(CONFIGS_DIR / "train" / f"imagenet1k_{name}.yaml")
        assert (cfg.optim.epochs, cfg.train.OFFICIAL_EPOCH_LENGTH) == (epochs, schedule.epoch_length), name


def test_the_imagenet100_configs_train_the_schedule_of_the_facts():
    full = load_config(CONFIGS_DIR / "train" / "imagenet100_vits16.yaml")
    assert (full.optim.epochs, full.train.OFFICIAL_EPOCH_LENGTH) == (SCHEDULE.epochs, SCHEDULE.epoch_length)
    denoised = load_config(CONFIGS_DIR / "train" / "imagenet100_denoised.yaml")
    assert denoised.optim.epochs == SCHEDULE.epochs
    keep_every = denoised.train.checkpoint_period // SCHEDULE.epoch_length  # NC / NCT can branch off these
    assert all(epoch % keep_every == 0 for epoch in (SCHEDULE.switch_epoch, *SCHEDULE.ablation_switch_epochs))
    for branch in ("imagenet100_nc.yaml", "imagenet100_nct.yaml", "imagenet100_nc_norestart.yaml"):
        assert load_config(CONFIGS_DIR / "train" / branch).optim.epochs == SCHEDULE.epochs - SCHEDULE.switch_epoch


def test_the_nct_weight_of_a_setting():
    assert [paper_facts.nct_weight(noise) for noise in ("gauss255", "gauss100", "shot1", "speckle1.0")] == [
        1.1, 4.0, 5.0, 2.0]
    assert paper_facts.nct_weight("gauss50") == paper_facts.NCT_WEIGHT_ELSEWHERE == 1.0
    with pytest.raises(ValueError, match="gauss-1"):
        paper_facts.nct_weight("gauss-1")


def _shell(script: str, *args: object) -> str:
    return subprocess.run(["bash", "-c", script, "bash", *map(str, args)], cwd=REPO, env=command_env(),
                          capture_output=True, text=True, check=True).stdout


def test_the_recipes_read_the_facts_from_python():
    values = _shell('source exps/lib/recipe.sh; load_paper_facts; echo "$PAPER_NOISES|$PAPER_NCT_WEIGHTS|'
                    '$PAPER_EPOCHS|$PAPER_EPOCH_LENGTH|$PAPER_SWITCH_EPOCH|$PAPER_ABLATION_SWITCH_EPOCHS"').strip()
    assert values.split("|") == [
        " ".join(PAPER_NOISE_SETTINGS), " ".join(f"{n}:{w}" for n, w in paper_facts.NCT_WEIGHTS.items()),
        str(SCHEDULE.epochs), str(SCHEDULE.epoch_length), str(SCHEDULE.switch_epoch),
        " ".join(map(str, SCHEDULE.ablation_switch_epochs))]
    weights = _shell("source exps/lib/miniature_pipeline.sh; for n in gauss100 shot1 gauss50; do "
                     "paper_nct_weight $n; done").split()
    assert weights == ["4.0", "5.0", "1.0"]
    folder = _shell("source exps/linear_probe.sh; last_export_dir outputs/run 3").strip()
    assert folder == str(encoder_export_dir("outputs/run", 3 * SCHEDULE.epoch_length - 1))


@pytest.mark.parametrize("encoder", EXPORT_ENCODERS)
def test_a_recipe_skips_a_run_whose_last_export_is_there(tmp_path, encoder):
    finished = "source exps/linear_probe.sh; run_finished \"$1\" 2 && echo finished || echo not"
    assert _shell(finished, tmp_path).strip() == "not"
    export = encoder_export_path(tmp_path, 2 * SCHEDULE.epoch_length - 1, encoder)
    export.parent.mkdir(parents=True)
    export.write_bytes(b"")
    assert _shell(finished, tmp_path).strip() == "finished"
    export.unlink()
    earlier = encoder_export_path(tmp_path, 2 * SCHEDULE.epoch_length - 2, encoder)  # not the last one
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"")
    assert _shell(finished, tmp_path).strip() == "not"


def test_the_paper_recipe_plans_with_the_facts():
    plan = subprocess.run(["bash", "exps/linear_probe_nct.sh", "--dry-run"], cwd=REPO, env=command_env(),
                          capture_output=True, text=True, check=True).stdout
    for noise, weight in paper_facts.NCT_WEIGHTS.items():
        assert f"nct.weight={weight} curriculum.branch_from=outputs/imagenet100/{noise}-{SCHEDULE.epochs}-denoised@" \
               f"{SCHEDULE.switch_epoch}" in plan


def test_no_recipe_spells_the_facts_again():
    weight_spelling = re.compile(r"gauss100[:)]\s*(echo\s*)?4\.0|gauss255[:)]\s*(echo\s*)?1\.1")
    schedule_spelling = re.compile(r"EPOCHS:-200\}|EPOCH_LENGTH:-1250\}|SWITCH_EPOCH:-140\}|training_\$")
    spelled = [str(p.relative_to(REPO)) for p in RECIPES
               if weight_spelling.search(p.read_text()) or schedule_spelling.search(p.read_text())]
    assert spelled == []
