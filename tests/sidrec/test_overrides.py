"""`--set a.b=v` / `--config file.yaml` against the real typed configs: values land
with the declared type, nested fields by dotted keys, bad input names its field."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from sidrec.cli import add_config_args, config_overrides
from sidrec.overrides import OverrideError, apply_overrides, read_config_file
from sidrec.tokenizers import hidvae_beauty
from sidrec.tokenizers.lamia import lamia_minilm_small, with_overrides


def test_text_values_take_the_declared_type():
    cfg = apply_overrides(
        hidvae_beauty(), ["lr=2e-3", "hidden_dims=256,128", "epochs=7", "tag_levels=none"]
    )
    assert cfg.lr == 2e-3 and isinstance(cfg.lr, float)
    assert cfg.hidden_dims == (256, 128)
    assert cfg.epochs == 7 and isinstance(cfg.epochs, int)
    assert cfg.tag_levels is None
    # Everything not named is the preset's.
    untouched = {f.name for f in dataclasses.fields(cfg)} - {
        "lr",
        "hidden_dims",
        "epochs",
        "tag_levels",
    }
    assert all(getattr(cfg, n) == getattr(hidvae_beauty(), n) for n in untouched)


def test_dotted_keys_reach_nested_dataclasses_and_string_tuples():
    base = lamia_minilm_small()
    cfg = with_overrides(base, ["gamma=0", "backbone.decoder_layers=1", "task_fields=title,brand"])
    assert cfg.gamma == 0.0
    assert cfg.backbone.decoder_layers == 1
    assert type(cfg.backbone) is type(base.backbone)
    assert cfg.task_fields == ("title", "brand")
    assert cfg.backbone.decoder_dim == base.backbone.decoder_dim


def test_yaml_file_then_set_later_wins(tmp_path):
    path = tmp_path / "lamia.yaml"
    path.write_text("gamma: 0.5\nepochs: 2\nbackbone:\n  decoder_layers: 3\n")
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    args = parser.parse_args(["--config", str(path), "--set", "epochs=4"])
    values = config_overrides(args)
    assert values == {"gamma": 0.5, "epochs": "4", "backbone.decoder_layers": 3}
    cfg = with_overrides(lamia_minilm_small(), values)
    assert (cfg.gamma, cfg.epochs, cfg.backbone.decoder_layers) == (0.5, 4, 3)


@pytest.mark.parametrize(
    "assignment, named",
    [
        ("lrr=1", "lrr"),  # unknown field: the message lists the real ones
        ("epochs=three", "epochs"),
        ("epochs=2.5", "epochs"),
        ("hidden_dims=256,x", "hidden_dims"),
        ("epochs", "epochs"),  # no "="
    ],
)
def test_bad_values_name_the_flag_and_field(assignment, named):
    with pytest.raises(OverrideError) as err:
        apply_overrides(hidvae_beauty(), [assignment])
    assert "--set" in str(err.value) and named in str(err.value)


def test_a_section_cannot_be_set_as_a_value():
    with pytest.raises(OverrideError, match="backbone.FIELD"):
        with_overrides(lamia_minilm_small(), ["backbone=small"])


def test_bad_config_file_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- a list, not a mapping\n")
    with pytest.raises(OverrideError, match="bad.yaml"):
        read_config_file(path)
    with pytest.raises(OverrideError, match="missing.yaml"):
        read_config_file(tmp_path / "missing.yaml")
