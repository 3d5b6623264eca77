"""bench/mfu.py on tiny models and a few real Beauty batches, so that it cannot rot:
one row per trainable, counted FLOPs, seconds and an MFU in (0, 100]."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _sids(root: Path) -> Path:
    path = REPO / "tests" / "sidrec" / "models" / "sid_helpers.py"
    spec = importlib.util.spec_from_file_location("sid_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_category_sids(root)


@pytest.mark.slow
def test_mfu_bench_measures_every_trainable(beauty_root, tmp_path):
    out = tmp_path / "mfu.json"
    cmd = [
        sys.executable, str(REPO / "bench" / "mfu.py"), "--tiny",
        "--artifact-root", str(beauty_root), "--sids", str(_sids(beauty_root)),
        "--max-users", "200", "--max-steps", "2", "--warmup", "1", "--threads", "1",
        "--json", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fp32 GEMM peak" in proc.stdout and "load average before" in proc.stdout
    result = json.loads(out.read_text())
    assert result["peak_gflops"] > 0 and result["threads"] == 1
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"sasrec_ce", "tiger", "sidgpt", "h2rec", "rqvae", "hidvae"}
    for r in rows.values():
        assert r["flops_per_epoch"] > 0 and r["seconds_per_epoch"] > 0
        assert 0 < r["mfu_percent"] <= 100
        assert r["steps"] <= 2 <= r["epoch_steps"]
    assert rows["sasrec_ce"]["logits_gb_per_s"] > 0  # the memory-bound loop says so
    for name in rows:
        assert f"| {name} |" in proc.stdout
