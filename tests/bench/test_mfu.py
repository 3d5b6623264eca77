"""bench/mfu.py --tiny end to end, as a user runs it (a subprocess), so the MFU
bench cannot rot: every trainable gets a row with positive FLOPs, seconds and
an MFU in (0, 100], and the JSON lands whole. Real Beauty users 0..299; SIDs
and embeddings are random (the ingested root has none): the timings depend on
shapes, not on which codes items get."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODELS = [
    "sasrec",
    "tiger",
    "sidgpt",
    "sidgpt_d128",
    "h2rec",
    "lmrec",
    "lmrec_r128",
    "rqvae",
    "hidvae",
    "lamia",
]
LABELS = [
    "SASRec-CE",
    "TIGER",
    "SID-GPT",
    "SID-GPT d128x4",
    "H2Rec-CE",
    "LM-Rec",
    "LM-Rec LoRA 128",
    "RQ-VAE",
    "HiD-VAE",
    "LAMIA",
]


def test_mfu_tiny_has_a_row_per_trainable(beauty_root, tmp_path):
    out = tmp_path / "mfu.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), os.environ.get("PYTHONPATH", "")]),
        "TOKENIZERS_PARALLELISM": "false",
    }
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "mfu.py"), "--tiny",
         "--artifact-root", str(beauty_root), "--models", ",".join(MODELS),
         "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "load average before:" in proc.stdout and "load average after:" in proc.stdout
    result = json.loads(out.read_text())
    assert [r["model"] for r in result["rows"]] == LABELS
    table_lines = proc.stdout.splitlines()
    for row in result["rows"]:
        assert row["flops_per_epoch"] > 0 and row["s_per_epoch"] > 0, row
        assert 0 < row["mfu_percent"] <= 100, row
        assert any(line.startswith(row["model"] + " ") for line in table_lines), row["model"]
    assert result["gemm_peak_flops_per_s"] > 0 and result["threads"] == 1
    assert len(result["load_before"]) == 3 and len(result["load_after"]) == 3
    # SASRec's full-softmax head gets its memory-traffic figures.
    logits = result["rows"][0]["logits"]
    assert logits["head_gbps"] > 0 and isinstance(logits["memory_bound"], bool)
    assert not list(tmp_path.glob(".*.tmp")), "the JSON is written by rename"
