"""Search spaces: every shipped tune_spaces/*.yaml loads, and bad ones fail naming file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sidrec.tuning import SpaceError, TrialSetup, load_space, max_concurrent_trials
from sidrec.tuning.spaces import parse_assignments, read_space_file
from sidrec.tuning.stages import PENDING, STAGES
from sidrec.tuning.sweep import best_config_document

REPO = Path(__file__).resolve().parents[3]
SPACES = sorted((REPO / "tune_spaces").glob("*.yaml"))


def _write(tmp_path: Path, doc: dict, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def _hidvae(**changes) -> dict:
    doc = {
        "stage": "hidvae",
        "metric": "collision_rate",
        "mode": "min",
        "base": {"epochs": 3},
        "params": {"unique_weight": {"grid": [0.0, 2.0]}, "unique_margin": {"grid": [0.5, 0.9]}},
    }
    doc.update(changes)
    return doc


def test_the_shipped_spaces_cover_every_stage_the_issue_names():
    stages = {read_space_file(p)["stage"] for p in SPACES}
    assert {"hidvae", "sasrec", "lamia", "h2rec"} <= stages
    keys: dict[str, set[str]] = {}
    for path in SPACES:
        raw = read_space_file(path)
        keys.setdefault(raw["stage"], set()).update(raw["params"])
    # HiD-VAE: β_commit, β_sup, β_unique, m, τ, L, K
    assert {
        "commitment_weight",
        "sup_weight",
        "unique_weight",
        "unique_margin",
        "temperature",
        "levels",
        "codebook_size",
    } <= keys["hidvae"]
    assert {"lr", "dropout", "num_layers"} <= keys["sasrec"]


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_every_shipped_space_loads(path):
    raw = read_space_file(path)
    if raw["stage"] in PENDING:
        # LAMIA / H2Rec: checked for form now; their keys once their configs land.
        with pytest.raises(SpaceError, match="has no trainable yet"):
            load_space(path)
        return
    space = load_space(path)
    assert space.stage.name in STAGES
    assert space.num_trials() >= 2
    domains = space.param_space()
    assert set(domains) == set(raw["params"])
    assert space.max_epochs() >= space.grace_period


def test_grid_space_counts_trials_and_tune_domains(tmp_path):
    space = load_space(_write(tmp_path, _hidvae(num_samples=2)))
    assert space.num_trials() == 8
    assert space.param_space()["unique_weight"] == {"grid_search": [0.0, 2.0]}
    assert space.max_epochs() == 3
    assert space.values({"unique_weight": 2.0}) == {"epochs": 3, "unique_weight": 2.0}


@pytest.mark.parametrize(
    "change, key, message",
    [
        (
            {"params": {"unique_wieght": {"grid": [1.0]}}},
            "params.unique_wieght",
            "not a hidvae key",
        ),
        ({"base": {"epoch": 3}}, "base.epoch", "not a hidvae key"),
        ({"params": {"unique_margin": {"uniform": [0.5, 1.5]}}}, "params.unique_margin", "cosine"),
        (
            {"params": {"unique_margin": {"uniform": [0.9, 0.5]}}},
            "params.unique_margin",
            "empty range",
        ),
        ({"params": {"temperature": {"loguniform": [0.0, 0.1]}}}, "params.temperature", "low > 0"),
        ({"params": {"unique_weight": {"grid": [-1.0, 2.0]}}}, "params.unique_weight", ">= 0"),
        ({"params": {"levels": {"choice": [3, "four"]}}}, "params.levels", "not a int"),
        ({"params": {"levels": {"normal": [3, 4]}}}, "params.levels", "unknown distribution"),
        ({"params": {"levels": {"randint": [3.5, 5]}}}, "params.levels", "integers"),
        ({"params": {"levels": {"grid": []}}}, "params.levels", "non-empty list"),
        ({"params": {}}, "params", "nothing to sweep"),
        ({"mode": "best"}, "mode", "min or max"),
        ({"metric": "valid/ndcg@10"}, "metric", "not reported every epoch"),
        ({"stage": "tiger"}, "stage", "unknown stage"),
        ({"asha": {"grace": 2}}, "asha.grace", "unknown key"),
        ({"asha": {"reduction_factor": 1}}, "asha.reduction_factor", ">= 2"),
        ({"num_samples": 0}, "num_samples", ">= 1"),
        ({"schedule": "asha"}, "schedule", "unknown key"),
        ({"base": {"unique_weight": 1.0}}, "base.unique_weight", "also in params"),
    ],
)
def test_invalid_spaces_name_the_file_and_key(tmp_path, change, key, message):
    path = _write(tmp_path, _hidvae(**change), "bad.yaml")
    with pytest.raises(SpaceError) as err:
        load_space(path)
    assert err.value.key == key
    assert err.value.file == str(path)
    assert message in str(err.value)
    assert str(err.value).startswith(f"{path}: key '{key}'")


def test_sasrec_space_checks_the_builder_arguments(tmp_path):
    doc = {
        "stage": "sasrec",
        "base": {"epochs": 2},
        "params": {"dropout": {"uniform": [0.1, 1.2]}},
    }
    with pytest.raises(SpaceError, match="dropout") as err:
        load_space(_write(tmp_path, doc))
    assert err.value.key == "params.dropout"
    doc["params"] = {"num_heads": {"choice": [1, 3]}}  # d_model 64 is not divisible by 3
    with pytest.raises(SpaceError) as err:
        load_space(_write(tmp_path, doc))
    assert err.value.key == "params.num_heads"


def test_file_level_errors(tmp_path):
    with pytest.raises(SpaceError, match="no such file"):
        load_space(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("stage: [hidvae\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_space(broken)
    listed = _write(tmp_path, ["stage", "hidvae"], "list.yaml")
    with pytest.raises(SpaceError, match="mapping at the top level"):
        load_space(listed)


def test_command_line_overrides_are_typed_and_checked(tmp_path):
    space = load_space(_write(tmp_path, _hidvae()))
    got = parse_assignments(space, ["hidden_dims=128,64", "codebook_size=64", "lr=1e-3"])
    # YAML 1.1 alone would read 1e-3 as a string; a space file gets the same reading.
    assert got == {"hidden_dims": (128, 64), "codebook_size": 64, "lr": 0.001}
    with pytest.raises(SpaceError, match="--set codebook_size"):
        parse_assignments(space, ["codebook_size=big"])
    with pytest.raises(SpaceError, match="KEY=VALUE"):
        parse_assignments(space, ["nope=1"])


def test_best_config_reproduces_the_trial_through_the_real_job(tmp_path, load_job):
    space = load_space(_write(tmp_path, _hidvae(base={"epochs": 3, "hidden_dims": [64]})))
    best = {
        "trial_id": "abc_00001",
        "params": {"unique_weight": 2.0, "unique_margin": 0.5},
        "value": 0.1,
    }
    doc = best_config_document(space, best, "s1", "beauty")
    assert doc["command"].startswith("python jobs/train_hidvae.py --dataset beauty")
    job = load_job("train_hidvae")
    cfg = job.build_config(job.parse_args(["--dataset", "beauty", *doc["args"]]))
    assert (cfg.unique_weight, cfg.unique_margin, cfg.epochs, cfg.hidden_dims) == (
        2.0,
        0.5,
        3,
        (64,),
    )
    stage = space.stage
    trained, _ = stage.trial(doc["values"], {"embeddings": "e", "tags": "t", "num_items": 12101})
    assert trained.__name__ == "train_loop"


def test_sasrec_best_config_reproduces_the_trial_through_the_real_job(tmp_path, load_job):
    doc_space = {
        "stage": "sasrec",
        "base": {"epochs": 5},
        "params": {"lr": {"loguniform": [1e-4, 1e-2]}},
    }
    space = load_space(_write(tmp_path, doc_space))
    best = {"trial_id": "t", "params": {"lr": 0.003}, "value": 0.05}
    doc = best_config_document(space, best, "s", "beauty")
    job = load_job("train_recommender")
    args = job.parse_args(["--dataset", "beauty", *doc["args"]])
    assert args.model == "sasrec" and args.lr == 0.003 and args.epochs == 5
    assert json.loads(args.arch)["dropout"] == 0.5 and json.loads(args.arch)["num_layers"] == 2


@pytest.mark.parametrize(
    "cluster, setup, expected",
    [
        ({"CPU": 2.0}, TrialSetup("hidvae", {}, {}, "/s"), 2),
        ({"CPU": 16.0, "GPU": 4.0}, TrialSetup("hidvae", {}, {}, "/s", use_gpu=True), 4),
        (
            {"CPU": 64.0, "GPU": 8.0},
            TrialSetup("hidvae", {}, {}, "/s", num_workers=2, use_gpu=True),
            4,
        ),
        # 2 CPUs, 1 Train worker per trial + the driver's sliver: one trial at a time.
        ({"CPU": 2.0}, TrialSetup("hidvae", {}, {}, "/s", num_workers=1), 1),
        ({"CPU": 8.0}, TrialSetup("hidvae", {}, {}, "/s", num_workers=2), 3),
    ],
)
def test_max_concurrent_trials_follows_the_resources(cluster, setup, expected):
    assert max_concurrent_trials(cluster, setup) == expected


def test_a_gpu_sweep_on_a_cpu_cluster_fails_fast():
    with pytest.raises(RuntimeError, match="drop --use-gpu"):
        max_concurrent_trials({"CPU": 2.0}, TrialSetup("hidvae", {}, {}, "/s", use_gpu=True))


def test_exponent_floats_in_a_space_file_are_numbers(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text("stage: sasrec\nbase: {epochs: 2}\nparams:\n  lr: {loguniform: [1e-4, 1e-2]}\n")
    assert load_space(path).params["lr"].values == [1e-4, 1e-2]
