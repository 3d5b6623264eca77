"""The typed run config of each recommender kind (models/train/run_config.py): its
defaults are the recipe's and the preset's, and the model it spells out is the
preset's, weight for weight, so a job set by fields trains what a preset trained."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sidrec.models.h2rec import h2rec
from sidrec.models.lmrec import LMRecConfig, lmrec
from sidrec.models.registry import MODELS
from sidrec.models.sasrec import sasrec
from sidrec.models.sidgpt import sidgpt
from sidrec.models.tiger import tiger
from sidrec.models.train import TrainConfig
from sidrec.models.train.run_config import train_config
from sidrec.overrides import apply_overrides

CODES = np.array([[0, 1], [1, 0], [2, 2], [3, 1], [0, 3]])
SIZES = [4, 4]


def _from_arch(kind: str, config: dict):
    """The generic builder with the run's `arch` (and knobs), as the loops call it."""
    arch = config["arch"]
    if kind == "sasrec":
        return sasrec(5, **arch)
    if kind == "h2rec":
        return h2rec(CODES, SIZES, **arch, **config["h2rec"])
    if kind == "tiger":
        return tiger(torch.as_tensor(CODES), SIZES, **arch, hierarchy_aware=False)
    if kind == "lmrec":
        return lmrec(torch.as_tensor(CODES), SIZES, **arch)
    return sidgpt(torch.as_tensor(CODES), SIZES, **arch)


def _from_preset(kind: str, builder):
    if kind == "sasrec":
        return builder(5)
    if kind == "h2rec":
        return builder(CODES, SIZES)
    if kind == "lmrec":
        return builder(torch.as_tensor(CODES), SIZES)
    # As the loops call it: the run's hierarchy_aware decides, not the preset's default.
    return builder(torch.as_tensor(CODES), SIZES, hierarchy_aware=False)


PRESETS = [(kind, preset) for kind in MODELS for preset in MODELS[kind].presets]


@pytest.mark.parametrize("kind, preset", PRESETS)
def test_the_run_config_spells_out_the_preset_weight_for_weight(kind, preset):
    spec = MODELS[kind]
    config = train_config(spec.default_run(preset), preset)
    if preset == "hidvae_recommender":  # 6 + 6 layers of d 512: ~3 s to build; its values
        assert config["arch"] == dict(spec.archs[preset])  # (the other TIGER presets: weights)
        return
    if preset in ("lmrec_opt350m", "lmrec_bert_base"):  # hub weights: the config, not a build
        want = LMRecConfig(num_items=5, codebook_sizes=SIZES, **spec.archs[preset])
        assert LMRecConfig(num_items=5, codebook_sizes=SIZES, **config["arch"]) == want
        return
    torch.manual_seed(0)
    ours = _from_arch(kind, config)
    torch.manual_seed(0)
    theirs = _from_preset(kind, spec.presets[preset])
    assert ours.cfg == theirs.cfg
    for (name, a), (_, b) in zip(
        ours.state_dict().items(), theirs.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_defaults_are_the_recipe_and_the_loop_config_is_valid(kind):
    spec = MODELS[kind]
    run = spec.default_run()
    for key, value in spec.recipe.items():
        if key != "preset":
            assert getattr(run, key) == value, key
    spec.check_run(run)
    TrainConfig.from_dict({"root": "", **train_config(run, spec.default_preset)})


def test_the_sweep_spaces_keys_are_run_config_fields():
    from pathlib import Path

    from sidrec.tuning import load_space

    repo = Path(__file__).resolve().parents[3]
    for name in ("sasrec", "h2rec", "sidgpt", "tiger"):
        space = load_space(repo / "tune_spaces" / f"{name}.yaml")
        fields = {f.name for f in dataclasses.fields(MODELS[name].run_config)}
        assert set(space.params) | set(space.base) <= fields, name


def test_bad_values_name_the_field():
    spec = MODELS["sidgpt"]
    with pytest.raises(ValueError, match="^dropout"):
        spec.check_run(apply_overrides(spec.default_run(), {"dropout": 1.0}))
    with pytest.raises(ValueError, match="^num_heads"):
        spec.check_run(apply_overrides(spec.default_run(), {"num_heads": 3}))
    with pytest.raises(ValueError, match="lr"):
        spec.check_run(apply_overrides(spec.default_run(), {"lr": 0.0}))
    with pytest.raises(ValueError, match="^lr_schedule"):
        spec.check_run(apply_overrides(spec.default_run(), {"lr_schedule": "step"}))


@pytest.mark.parametrize("name", ["sasrec", "h2rec", "sidgpt"])
def test_seen_penalty_is_a_checked_field(name):
    spec = MODELS[name]
    assert spec.default_run().seen_penalty == 0.0
    config = train_config(apply_overrides(spec.default_run(), {"seen_penalty": 0.5}), "")
    assert config["arch"]["seen_penalty"] == 0.5
    with pytest.raises(ValueError, match="^seen_penalty must be >= 0"):
        spec.check_run(apply_overrides(spec.default_run(), {"seen_penalty": -1.0}))
    if name == "sidgpt":  # no loss to choose: its term is sampled (models/_unlikelihood.py)
        return
    bce = apply_overrides(spec.default_run(), {"seen_penalty": 1.0, "loss": "bce"})
    with pytest.raises(ValueError, match="^seen_penalty needs loss 'ce'"):
        spec.check_run(bce)


def test_cosine_schedule_warms_up_then_decays_to_zero_over_the_epochs():
    """Written from the definition, not from lr_factor's code: warm-up is linear
    in steps; cosine is cos² of a quarter turn per epoch fraction."""
    from sidrec.models.train._common import lr_factor

    cfg = TrainConfig.from_dict({"root": "", "epochs": 10, "warmup_steps": 4})
    assert [lr_factor(cfg, s, 0) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(cfg, 100, 9) == 1.0  # constant: no decay
    cosine = dataclasses.replace(cfg, lr_schedule="cosine")
    for epoch in range(10):
        expected = np.cos(np.pi / 2 * epoch / 10) ** 2  # = (1 + cos(pi t)) / 2
        assert lr_factor(cosine, 100, epoch) == pytest.approx(expected)
    assert lr_factor(cosine, 1, 5) == pytest.approx(0.5 * 0.5)  # warm-up times decay
    assert lr_factor(cosine, 100, 9) < 0.03  # near zero at the last epoch
