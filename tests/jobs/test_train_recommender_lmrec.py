"""`jobs/train_recommender.py --model lmrec` end to end on real Beauty users with the
packaged MiniLM: --set reaches the model and the loop (phase 1 then phase 2), the
test split is read once, and the bundle it writes (backbone reference + adapter +
SID tokens) recommends real items when loaded back."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from sidrec.models.bundle import load_bundle

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
USERS = 60


def _category_sids(root: Path) -> Path:
    path = REPO / "tests" / "sidrec" / "models" / "sid_helpers.py"
    spec = importlib.util.spec_from_file_location("sid_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_category_sids(root)


def test_lmrec_job_trains_tests_and_bundles(beauty_root, load_job, data_dir):
    job = load_job("train_recommender")
    sets = ["max_history=4", "align_batch=4", "phase1_epochs=1", "titles=true", "lora_rank=2",
            "lora_alpha=4", "batch_size=32", "eval_batch_size=64"]  # fmt: skip
    args = job.parse_args(
        ["--model", "lmrec", "--dataset", "beauty", "--data-dir", str(data_dir),
         "--artifact-root", str(beauty_root), "--sids", str(_category_sids(beauty_root)),
         "--no-mlflow", "--max-users", str(USERS), "--epochs", "2",
         *[a for kv in sets for a in ("--set", kv)]]
    )  # fmt: skip
    record = job.main(args)
    assert record["model"] == "lmrec" and record["test"]["count"] == USERS
    knobs = {"align_weight": 1.0, "align_batch": 4, "phase1_epochs": 1, "phase1_patience": 2}
    assert record["config"]["lmrec"] == knobs and record["epochs_run"] == 2
    rec = load_bundle(record["bundle"])
    assert rec.kind == "lmrec" and rec.model.cfg.titles and rec.history_length == 4
    assert rec.model.cfg.backbone == "" and rec.model.cfg.lora_rank == 2  # the packaged MiniLM
    assert rec.model.prefix_lm is False  # the preset's measured choice travels in the bundle
    out = rec.recommend([[1, 2, 3], [40]], k=5, exclude_seen=True)
    assert out.items.shape == (2, 5) and bool((out.items >= 0).all())
    assert not {1, 2, 3} & set(out.items[0].tolist())
