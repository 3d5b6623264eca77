"""bench/scale.py as a user runs it (a subprocess): a 100k-item run of every stage
but MiniLM (its rate needs minutes of a transformer on 2 cores), and the skip
messages a stage gets when it would not fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGES = ["generate", "read_splits", "embed_hashed", "rqkmeans", "rqvae", "sid_trie",
          "decode", "bundle", "serve", "eval"]  # fmt: skip


def _run(tmp_path: Path, *flags: str, timeout: int) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "scale.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), os.environ.get("PYTHONPATH", "")]),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scale.py"), "--root", str(tmp_path / "root"),
         "--json", str(out), "--csv", str(tmp_path / "scale.csv"), *flags],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_a_stage_that_would_not_fit_is_skipped_and_says_why(tmp_path):
    proc, result = _run(
        tmp_path, "--sizes", "1000", "--stages", "generate", "rqkmeans", "sid_trie",
        "--mem-budget-gib", "0.0001", timeout=60,
    )  # fmt: skip
    status = {r["stage"]: r["status"] for r in result["rows"]}
    assert status["generate"].startswith("skipped: needs ~0 GiB > --mem-budget-gib")
    assert status["rqkmeans"].startswith("skipped: needs ~")  # its input stage not asked for
    assert status["sid_trie"] == "skipped: needs rqkmeans, which did not run"
    assert "# sid_trie: did not run" in proc.stdout
    assert "load average before:" in proc.stdout and "load average after:" in proc.stdout


@pytest.mark.slow
def test_every_stage_runs_at_100k_items(tmp_path):
    proc, result = _run(
        tmp_path, "--sizes", "100000", "--stages", *STAGES, "--rqvae-steps", "3",
        "--decode-reps", "5", "--eval-seconds", "2", "--serve-seconds", "2", timeout=600,
    )  # fmt: skip
    rows = {r["stage"]: r for r in result["rows"]}
    assert list(rows) == STAGES
    for stage, row in rows.items():
        assert row["status"] == "ok", (stage, row["status"])
        assert row["wall_s"] > 0 and row["peak_rss_mib"] > 50, row
        assert f"# {stage}: largest N that ran: 100,000" in proc.stdout
    fig = {stage: row["figures"] for stage, row in rows.items()}
    assert fig["generate"]["interactions"] > 800_000
    # Trie + SID table: bounded dense parts (a few MiB) dominate at 100k; <= 32 B/item at 10M
    assert fig["sid_trie"]["bytes_per_item"] < 100
    assert fig["sid_trie"]["dense_mib"] <= 4 * 8  # L levels x the 4 MiB budget, masks only
    assert 0 < fig["decode"]["fixed_b1_p50_ms"] <= fig["decode"]["fixed_b1_p99_ms"]
    assert 0 < fig["decode"]["rq_b32_p50_ms"] and fig["decode"]["rq_last_k"] >= 1
    assert 0 <= fig["rqkmeans"]["collision_rate"] < 1
    assert fig["bundle"]["request_ms"] > 0 and fig["bundle"]["load_s"] > 0
    assert set(fig["serve"]["statuses"]) == {"200"} and fig["serve"]["p50_ms"] > 0
    assert fig["eval"]["users"] > 0 and fig["eval"]["batch"] * 12 * 100_000 <= 256 * 2**20
    csv_lines = (tmp_path / "scale.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(STAGES)
