"""Every job wired to the one config language says so in `--help`: `--set` and
`--config`, each with what it overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
JOBS = sorted(path.stem for path in (REPO / "jobs").glob("*.py"))


def test_every_job_is_listed():
    assert len(JOBS) >= 10 and "train_recommender" in JOBS and "sweep" in JOBS


@pytest.mark.parametrize("name", JOBS)
def test_help_lists_set_and_config(name, capsys, load_job):
    with pytest.raises(SystemExit) as stop:
        load_job(name).parse_args(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "--set KEY=VALUE" in text and "--config FILE.yaml" in text


def test_config_file_and_set_reach_the_tokenizer_config(tmp_path, load_job):
    path = tmp_path / "rqvae.yaml"
    path.write_text("lr: 0.002\nhidden_dims: [64, 32]\n")
    job = load_job("train_rqvae")
    args = job.parse_args(["--config", str(path), "--set", "lr=0.005", "--epochs", "3"])
    cfg = job.build_config(args)
    assert (cfg.lr, cfg.hidden_dims, cfg.epochs) == (0.005, (64, 32), 3)


@pytest.mark.parametrize(
    "job, fields",
    [
        ("train_recommender", ["--model sasrec", "d_model = 64", "dropout = 0.5", "lr = 0.001"]),
        ("train_recommender", ["--model h2rec", "beta = 0.1", "code_threshold = 2"]),
        ("train_recommender", ["--model sidgpt", "dropout = 0.3", "trie_softmax = True"]),
        ("evaluate", ["neighbours = 100", "batch_size = 1024"]),
        ("ingest", ["max_history = 20", "kcore = none"]),
        ("train_lamia", ["backbone.frozen_layers = 5", "num_palette = 4", "gamma = 0.1"]),
        ("embed_catalog", ["encoder.backend = sentence-transformers", "rows_per_call"]),
        ("train_rqvae", ["codebook_size = 256", "commitment_weight"]),
    ],
)
def test_help_lists_every_field_with_its_default_and_meaning(job, fields, capsys, load_job):
    with pytest.raises(SystemExit):
        load_job(job).parse_args(["--help"])
    text = capsys.readouterr().out
    for field in fields:
        assert field in text, field
    assert "self-attention blocks" in text or job != "train_recommender"  # a meaning


def _exit(module, argv: list[str], capsys) -> tuple[int, str]:
    """Run the job's `main` through `run_job` as its `__main__` does."""
    from sidrec.cli import run_job

    with pytest.raises(SystemExit) as stop:
        run_job(module.main, lambda: module.parse_args(argv))
    return stop.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "job, argv, named",
    [
        ("train_recommender", ["--model", "sasrec", "--set", "dropout=lots"], "dropout"),
        ("train_recommender", ["--model", "sasrec", "--set", "dropout=1.5"], "dropout"),
        ("train_recommender", ["--model", "sasrec", "--set", "num_hedas=2"], "num_hedas"),
        ("train_recommender", ["--model", "sasrec", "--beta", "0.1"], "beta"),
        ("train_recommender", ["--model", "tiger", "--set", "head_dim=x"], "head_dim"),
        ("train_recommender", ["--model", "sidgpt", "--preset", "tiger_cpu"], "--preset"),
        ("evaluate", ["--set", "neighbours=0"], "neighbours"),
        ("evaluate", ["--set", "model=knn"], "model"),
        ("ingest", ["--set", "max_history=ten"], "max_history"),
        ("ingest", ["--set", "kcorr=5"], "kcorr"),
    ],
)
def test_a_bad_key_or_value_exits_2_naming_the_field(job, argv, named, tmp_path, capsys, load_job):
    code, err = _exit(load_job(job), ["--artifact-root", str(tmp_path), *argv], capsys)
    assert code == 2 and err.startswith("error:") and named in err, err


def test_a_config_file_reaches_the_recommender_config(tmp_path, load_job):
    path = tmp_path / "sasrec.yaml"
    path.write_text("lr: 3.0e-4\nd_model: 32\nnum_layers: 1\n")
    job = load_job("train_recommender")
    args = job.parse_args(
        ["--model", "sasrec", "--config", str(path), "--set", "d_model=48", "--epochs", "7"]
    )
    run, preset = job.run_config(args)
    assert (run.lr, run.d_model, run.num_layers, run.epochs) == (3e-4, 48, 1, 7)
    assert preset == "sasrec_beauty" and run.dropout == 0.5  # the rest: the preset's
    config = job.train_config(args)
    assert config["arch"]["d_model"] == 48 and config["lr"] == 3e-4


def test_a_sweep_config_file_sets_the_space_base(tmp_path):
    from sidrec.overrides import read_config_file
    from sidrec.tuning import load_space
    from sidrec.tuning.spaces import SpaceError, parse_values

    space = load_space(REPO / "tune_spaces" / "sasrec.yaml")
    path = tmp_path / "base.yaml"
    path.write_text("epochs: 3\nmax_users: 200\n")
    assert parse_values(space, read_config_file(path), "--config") == {
        "epochs": 3,
        "max_users": 200,
    }
    path.write_text("dropout: 2.0\n")
    with pytest.raises(SpaceError, match="dropout"):
        parse_values(space, read_config_file(path), "--config")
