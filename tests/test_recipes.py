"""recipes/*.yaml: each measured bench run as one `--config` file. A recipe must
resolve to the very run config the bench's command line did, so the figure in
docs/ stays what `--config recipes/X.yaml` trains."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# recipe -> the bench/beauty_quality.py run it reproduces
RECIPES = {
    "sidgpt_beauty_d128_cosine90": "sidgpt_rqvae_d128_cosine90",
    "sidgpt_beauty_d128_ids_cosine90": "sidgpt_hidvae_d128_ids_drop05_cosine90",
    "sidgpt_beauty_d128_ids_iddrop025_cosine90": "sidgpt_hidvae_d128_ids_drop05_iddrop025_cosine90",
    "sidgpt_beauty_d128_ids_iddrop025_cosine140": (
        "sidgpt_hidvae_d128_ids_drop05_iddrop025_cosine140"
    ),
    "sidgpt_beauty_d128_ids_iddrop025_batch128_cosine140": (
        "sidgpt_hidvae_d128_ids_drop05_iddrop025_batch128_cosine140"
    ),
    "sidgpt_beauty_d128_ids_iddrop025_batch128_cosine148_valid5": (
        "sidgpt_hidvae_d128_ids_drop05_iddrop025_batch128_cosine148_valid5"
    ),
    "sasrec_beauty_ce_cosine88": "sasrec_ce_cosine88",
    "sasrec_beauty_ce_batch128_cosine80": "sasrec_ce_batch128_cosine80",
    "sasrec_beauty_ce_seen4_batch128_cosine80": "sasrec_ce_batch128_cosine80_seen4",
    "h2rec_beauty_ce_batch128_cosine80": "h2rec_ce_batch128_cosine80",
}


def _job_args(command: list[str]) -> list[str]:
    """A bench command's arguments after `jobs/train_recommender.py`."""
    return command[command.index("jobs/train_recommender.py") + 1 :]


def _inputs(args: list[str]) -> list[str]:
    """What a recipe leaves to the command line: dataset, model, SID table, embeddings."""
    kept = []
    for flag in ("--dataset", "--model", "--sids", "--embeddings"):
        if flag in args:
            kept += [flag, args[args.index(flag) + 1]]
    return kept + [a for a in args if a in ("--no-mlflow", "--hierarchy-aware")]


@pytest.mark.parametrize("recipe, run", sorted(RECIPES.items()))
def test_a_recipe_is_the_bench_run_it_names(recipe, run, load_job, load_bench):
    job = load_job("train_recommender")
    bench_args = _job_args(load_bench("beauty_quality").RUNS[run][2])
    path = REPO / "recipes" / f"{recipe}.yaml"
    recipe_args = [*_inputs(bench_args), "--config", str(path)]
    from_bench, preset = job.run_config(job.parse_args(bench_args))
    from_recipe, recipe_preset = job.run_config(job.parse_args(recipe_args))
    assert (from_recipe, recipe_preset) == (from_bench, preset)


def test_every_recipe_is_checked_and_named_in_the_docs():
    shipped = {p.stem for p in (REPO / "recipes").glob("*.yaml")}
    assert shipped == set(RECIPES)
    results = (REPO / "docs" / "RESULTS_recommender.md").read_text()
    for name in shipped:
        assert f"recipes/{name}.yaml" in results, name
