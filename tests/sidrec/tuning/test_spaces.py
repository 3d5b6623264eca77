"""Search spaces: every shipped tune_spaces/*.yaml loads, and bad ones fail naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sidrec.tuning import SpaceError, TrialSetup, load_space, max_concurrent_trials
from sidrec.tuning.spaces import parse_assignments, read_space_file
from sidrec.tuning.stages import STAGES
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
    assert {"hidvae", "sasrec", "lamia", "h2rec", "sidgpt", "tiger"} <= stages
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
    # TIGER: lr, dropout, batch, depth (encoder and decoder) and width
    assert {
        "lr",
        "dropout",
        "batch_size",
        "num_encoder_layers",
        "num_decoder_layers",
        "d_model",
    } <= keys["tiger"]
    # H2Rec: β, γ, t, w and the SID table (its L x K)
    assert {"beta", "gamma", "code_threshold", "window", "sids"} <= keys["h2rec"]
    # LAMIA: α_intra, α_inter, γ, L, LoRA rank, K
    assert {
        "intra_margin",
        "inter_margin",
        "gamma",
        "num_palette",
        "backbone.lora_rank",
        "codebook_size",
    } <= keys["lamia"]


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_every_shipped_space_loads(path):
    raw = read_space_file(path)
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
        ({"stage": "gru4rec"}, "stage", "unknown stage"),
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
    assert doc["args"][:2] == ["--model", "sasrec"] and "--set" in doc["args"]
    run, preset = job.run_config(args)
    assert (run.lr, run.epochs) == (0.003, 5)
    # Not in the space: the job's defaults, the same the trial started from.
    assert (run.dropout, run.num_layers, preset) == (0.5, 2, "sasrec_beauty")
    _, trained = space.stage.trial(doc["values"], {"root": str(tmp_path), "num_items": 12})
    assert job.train_config(args) == {k: v for k, v in trained.items() if k != "root"}


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


# ----------------------------------------------------------------------------
# H2Rec and LAMIA: the shipped spaces' keys are the configs' own
# ----------------------------------------------------------------------------


def _shipped_with(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """tune_spaces/<name>.yaml with one line's text replaced, written to tmp_path."""
    text = (REPO / "tune_spaces" / f"{name}.yaml").read_text()
    assert old in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    "name, old, new, key, message",
    [
        # The keys the space used to carry before H2Rec's config existed.
        ("h2rec", "  beta:", "  align_weight:", "params.align_weight", "not a h2rec key"),
        ("h2rec", "  window:", "  levels:", "params.levels", "not a h2rec key"),
        ("h2rec", "  loss: ce", "  loss: ce\n  codebook_size: 256", "base.codebook_size", "known"),
        ("h2rec", "loguniform: [0.01, 1.0]", "uniform: [-0.5, 1.0]", "params.beta", ">= 0"),
        ("h2rec", "choice: [1, 3, 5]", "choice: [1, 3.5]", "params.window", "not a int"),
        ("lamia", "  gamma:", "  gama:", "params.gama", "not a lamia key"),
        ("lamia", "backbone.lora_rank:", "backbone.lora_rnk:", "params.backbone.lora_rnk", "known"),
        # LoRA is the decoder-only backbone's: the MiniLM preset has no rank.
        ("lamia", "preset: opt", "preset: minilm_small", "params.backbone.lora_rank", "LoRA"),
        ("lamia", "preset: opt", "preset: gpt5", "base", "preset='gpt5'"),
        ("lamia", "choice: [3, 4]", "choice: [0, 4]", "params.num_palette", ">= 1"),
    ],
)
def test_a_bad_key_in_h2rec_or_lamia_space_names_file_and_key(
    tmp_path, name, old, new, key, message
):
    if message == "LoRA":
        message = "not a field of EncoderBackbone"
    path = _shipped_with(tmp_path, name, old, new)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    assert err.value.file == str(path) and err.value.key == key
    assert message in str(err.value)


def test_h2rec_space_keys_are_h2rec_config_fields():
    from sidrec.models.h2rec import H2RecConfig
    from sidrec.models.train.config import H2REC_KNOBS

    space = load_space(REPO / "tune_spaces" / "h2rec.yaml")
    fields = set(H2RecConfig.__dataclass_fields__)
    for key in ("beta", "gamma", "code_threshold", "window"):
        assert key in space.params and key in fields and key in H2REC_KNOBS
    assert space.params["sids"].kind == "choice"


def test_lamia_space_keys_are_lamia_config_fields():
    from sidrec.tokenizers.lamia import LamiaConfig
    from sidrec.tokenizers.lamia.palette import DecoderBackbone

    space = load_space(REPO / "tune_spaces" / "lamia.yaml")
    for key in space.params:
        section, _, field_name = key.rpartition(".")
        owner = DecoderBackbone if section == "backbone" else LamiaConfig
        assert field_name in owner.__dataclass_fields__, key


def _sid_table(root: Path, name: str, sizes: tuple[int, ...], num_items: int = 12) -> Path:
    import numpy as np

    from sidrec.data.sids import SidTable, disambiguate, write_sid_table

    codes = np.random.default_rng(0).integers(0, min(sizes), (num_items, len(sizes)))
    path = root / "sids" / f"{name}.parquet"
    write_sid_table(path, SidTable(codes, disambiguate(codes), list(sizes)), {"learner": "test"})
    return path


def test_h2rec_best_config_reproduces_the_trial_through_the_real_job(tmp_path, load_job):
    """The best trial's values -> `train_recommender.py --model h2rec ...` -> the same
    loop config the trial trained (the SID table path made absolute)."""
    table = _sid_table(tmp_path, "l2", (4, 4))
    doc_space = {
        "stage": "h2rec",
        "base": {"epochs": 5, "d_model": 16, "ffn_dim": 16, "max_len": 20, "max_users": 300},
        "params": {"beta": {"loguniform": [0.01, 1.0]}, "sids": {"choice": ["sids/l2.parquet"]}},
    }
    space = load_space(_write(tmp_path, doc_space))
    best = {"trial_id": "t", "params": {"beta": 0.3, "sids": "sids/l2.parquet"}, "value": 0.02}
    context = {"root": str(tmp_path), "num_items": 12, "default_sids": ""}
    doc = best_config_document(space, best, "s", "beauty", context)
    assert doc["values"]["sids"] == str(table.resolve())
    job = load_job("train_recommender")
    args = job.parse_args(["--dataset", "beauty", *doc["args"]])
    run, _ = job.run_config(args)
    assert args.model == "h2rec" and run.sids == str(table.resolve())
    from_job = job.train_config(args)
    _, trained = space.stage.trial(doc["values"], context)
    for key in ("h2rec", "arch", "epochs", "lr", "batch_size", "max_users", "loss", "patience"):
        assert from_job[key] == trained[key], key
    assert trained["h2rec"]["beta"] == 0.3 and trained["sids"] == run.sids
    assert trained["arch"]["d_model"] == 16


def test_h2rec_trial_checks_each_sid_table_against_t(tmp_path):
    """t (code_threshold) above a table's levels fails before any trial, naming sids."""
    from sidrec.tuning.sweep import _check_trials_build

    _sid_table(tmp_path, "l2", (4, 4))
    doc_space = {
        "stage": "h2rec",
        "base": {"code_threshold": 3},
        "params": {"sids": {"choice": ["sids/l2.parquet"]}},
    }
    space = load_space(_write(tmp_path, doc_space))
    context = {"root": str(tmp_path), "num_items": 12, "default_sids": ""}
    with pytest.raises(SpaceError, match="code_threshold must lie in") as err:
        _check_trials_build(space, context)
    assert err.value.key == "params.sids"
    missing = {**doc_space, "params": {"sids": {"choice": ["sids/nope.parquet"]}}}
    with pytest.raises(SpaceError, match="no such file"):
        _check_trials_build(load_space(_write(tmp_path, missing, "m.yaml")), context)


def test_tiger_best_config_reproduces_the_trial_through_the_real_job(tmp_path, load_job):
    """The shipped TIGER space's keys -> best_config.yaml -> `train_recommender.py
    --model tiger ...` -> the loop config the trial trained (the one table under
    sids/ made absolute); what the space leaves out stays tiger_small()'s."""
    table = _sid_table(tmp_path, "only", (4, 4))
    space = load_space(REPO / "tune_spaces" / "tiger.yaml")
    params = {
        "lr": 0.002,
        "dropout": 0.2,
        "batch_size": 256,
        "num_encoder_layers": 2,
        "num_decoder_layers": 4,
        "d_model": 64,
    }
    assert set(params) == set(space.params)
    best = {"trial_id": "t", "params": params, "value": 0.03}
    context = {"root": str(tmp_path), "num_items": 12, "default_sids": str(table.resolve())}
    doc = best_config_document(space, best, "s", "beauty", context)
    assert doc["args"][:2] == ["--model", "tiger"]
    job = load_job("train_recommender")
    args = job.parse_args(["--dataset", "beauty", *doc["args"]])
    run, preset = job.run_config(args)
    assert preset == "tiger_small" and run.sids == str(table.resolve())
    assert (run.lr, run.dropout, run.batch_size, run.epochs) == (0.002, 0.2, 256, 100)
    loop, trained = space.stage.trial(doc["values"], context)
    assert loop.__name__ == "tiger_train_loop" and trained["sids"] == run.sids
    from_job = job.train_config(args)
    for key in ("arch", "epochs", "lr", "batch_size", "warmup_steps", "weight_decay", "beam_width"):
        assert from_job[key] == trained[key], key
    arch = trained["arch"]
    assert (arch["num_encoder_layers"], arch["num_decoder_layers"], arch["d_model"]) == (2, 4, 64)
    assert (arch["num_heads"], arch["head_dim"], arch["dropout"]) == (6, 64, 0.2)


def test_lamia_best_config_reproduces_the_trial_through_the_real_job(tmp_path, load_job):
    space = load_space(REPO / "tune_spaces" / "lamia.yaml")
    params = {
        "intra_margin": 0.2,
        "inter_margin": 0.3,
        "gamma": 0.05,
        "num_palette": 3,
        "backbone.lora_rank": 16,
        "codebook_size": 128,
    }
    best = {"trial_id": "t", "params": params, "value": 0.01}
    values = {**space.base, "lm_path": "/models/opt-350m"}
    space = space.__class__(**{**space.__dict__, "base": values})
    doc = best_config_document(space, best, "s", "beauty")
    job = load_job("train_lamia")
    args = job.parse_args(["--dataset", "beauty", *doc["args"]])
    assert args.skip_recommender and args.preset == "opt"
    from_job = job.lamia_config(args)
    _, trained = space.stage.trial(doc["values"], {"items": "i", "num_items": 12101})
    assert from_job == trained["lamia"]
    assert from_job.backbone.lora_rank == 16 and from_job.backbone.lora_alpha == 32
    assert (from_job.num_palette, from_job.codebook_size, from_job.epochs) == (3, 128, 10)


def test_lamia_opt_preset_without_a_model_path_is_named():
    stage = STAGES["lamia"]
    with pytest.raises(ValueError, match="lm_path"):
        stage.trial({"preset": "opt"}, {"items": "i", "num_items": 100})
