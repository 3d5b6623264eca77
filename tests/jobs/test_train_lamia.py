"""jobs/train_lamia.py end to end, in this process, on the real MovieLens-100k
catalog (1,682 items; fields title / genres / release date) with tiny settings
and a real MLflow store in a temp dir: SID table for every item, the
tokenizer and the recommender registered, the recommender loadable by alias
as serve_apps loads it, an up-to-date re-run skipping the palette training,
and the errors a user sees for bad flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sidrec.data import DataError
from sidrec.data.sids import read_sid_table

# End to end (jobs, Ray, Serve over HTTP): the full suite and CI run it;
# `pytest -m "not slow"` skips it while editing.
pytestmark = pytest.mark.slow

DATASET = "movielens_100k"
TINY = [
    "--set", "train_items=256",
    "--set", "batch_size=32",
    "--set", "codebook_size=32",
    "--set", "pca_dim=16",
    "--set", "kmeans_iters=5",
    "--set", "backbone.decoder_dim=64",
    "--set", "backbone.decoder_ffn=128",
    "--set", "backbone.decoder_layers=1",
    "--set", "backbone.max_content_tokens=32",
    "--set", "backbone.max_answer_tokens=12",
    "--rec-max-users", "40",
    "--rec-time-budget-s", "1",
    "--rec-epochs", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("lamia-job") / DATASET


def _args(job, root, data_dir, *extra):
    return job.parse_args(
        [
            "--dataset",
            DATASET,
            "--data-dir",
            str(data_dir),
            "--artifact-root",
            str(root),
            *TINY,
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def first_run(load_job, root, data_dir):
    job = load_job("train_lamia")
    return job, job.main(_args(job, root, data_dir))


def test_job_writes_parallel_sids_for_every_item(first_run, root):
    _, out = first_run
    table = read_sid_table(out["sids"], num_items=1682)
    assert table.codes.shape == (1682, 4)
    assert table.codes.min() >= 0 and table.codes.max() < 32
    assert table.meta["learner"] == "lamia" and table.meta["code_order"] == "parallel"
    # The index token exists exactly where codes coincide.
    full = table.full_codes()
    assert len(np.unique(full, axis=0)) == 1682
    if table.disambig.max() == 0:
        assert len(np.unique(table.codes, axis=0)) == 1682
    m = out["tokenizer_metrics"]
    assert m["utilization/level_0"] > 0.5
    # The default spreads colliding items to free SIDs one code away: none is left.
    assert m["nearest_collision_rate"] > 0.0 and m["spread_moved"] > 0
    assert m["collision_rate"] == 0.0 and m["max_items_per_sid"] == 1
    assert m["steps"] == 256 // 32


def test_job_registers_a_servable_recommender(first_run, root):
    from mlflow import MlflowClient

    from sidrec.models.bundle import load_bundle

    _, out = first_run
    rec = out["recommender"]
    assert rec["registered"] == f"models:/sidrec-lamia-{DATASET}@candidate"
    assert set(rec["test"]) >= {"recall@10", "ndcg@10", "exclude_seen/recall@10"}
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.get_model_version_by_alias(f"sidrec-tokenizer-lamia-{DATASET}", "candidate")
    recommender = load_bundle(rec["registered"], tracking_uri=uri)
    assert recommender.kind == "sidgpt"  # the default kind
    assert set(out["baselines"]) == {"MostPopular", "item-KNN"}
    got = recommender.recommend([[0, 1, 2]], k=10)
    ids = got.items[0][got.items[0] >= 0]
    assert len(ids) == 10 and ids.unique().numel() == 10 and int(ids.max()) < 1682
    record = json.loads((root / "eval" / f"{rec['run_name']}.json").read_text())
    assert Path(record["config"]["sids"]) == Path(out["sids"]).resolve()


def test_rerun_skips_the_palette_training(first_run, root, data_dir, capsys):
    job, out = first_run
    again = job.main(_args(job, root, data_dir, "--skip-recommender"))
    assert again["sids"] == out["sids"]
    assert "up to date, skipped" in capsys.readouterr().out


def test_bad_inputs_are_named(load_job, root, data_dir):
    job = load_job("train_lamia")
    with pytest.raises(DataError, match="brand"):
        job.main(
            _args(job, root, data_dir, "--set", "task_fields=title,brand", "--skip-recommender")
        )
    with pytest.raises(ValueError, match="nope"):
        job.main(_args(job, root, data_dir, "--set", "nope=1"))
    with pytest.raises(SystemExit, match="lm-path"):
        job.main(_args(job, root, data_dir, "--preset", "opt"))


def test_the_end_summary_says_what_was_built_and_how_to_try_it(first_run, root):
    job, out = first_run
    text = job.end_summary(root, out, job.StageClock())
    rec = out["recommender"]
    assert rec["registered"] in text and "collision rate" in text
    assert "MostPopular" in text and "item-KNN" in text and "this model" in text
    assert (
        "serve run serve_apps/config.yaml" in text and "curl -s localhost:8000/v1/recommend" in text
    )
    # the curl names real catalog ids (source ids), not internal integers
    body = json.loads(text.split("-d '")[1].split("'")[0])
    assert body["history"] and all(isinstance(i, str) for i in body["history"])
