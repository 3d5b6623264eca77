"""Every job wired to the one config language says so in `--help`: `--set` and
`--config`, each with what it overrides."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# jobs/train_recommender.py, ingest.py, evaluate.py and sweep.py are not wired yet.
WIRED = [
    "train_rqvae",
    "train_rqkmeans",
    "train_hidvae",
    "train_lamia",
    "embed_catalog",
    "generate_tags",
]


def _job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", WIRED)
def test_help_lists_set_and_config(name, capsys):
    with pytest.raises(SystemExit) as stop:
        _job(name).parse_args(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "--set KEY=VALUE" in text and "--config FILE.yaml" in text


def test_config_file_and_set_reach_the_tokenizer_config(tmp_path):
    path = tmp_path / "rqvae.yaml"
    path.write_text("lr: 0.002\nhidden_dims: [64, 32]\n")
    job = _job("train_rqvae")
    args = job.parse_args(["--config", str(path), "--set", "lr=0.005", "--epochs", "3"])
    cfg = job.build_config(args)
    assert (cfg.lr, cfg.hidden_dims, cfg.epochs) == (0.005, (64, 32), 3)
