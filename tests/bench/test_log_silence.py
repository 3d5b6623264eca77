"""bench/log_silence.py: the gaps between timestamped lines, longest first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "log_silence.py"

LOG = """\
2026-12-04 07:29:19,578 INFO sidrec.stage: stage LAMIA SIDs: started
(RayTrainWorker pid=1) a line without a timestamp
2026-12-04 07:29:30,213 INFO sidrec.tokenizers.lamia.train: lamia epoch 0 4/62
2026-12-04 07:29:31,000 INFO sidrec.progress: more
| a | table |
2026-12-04 07:29:49,500 INFO sidrec.stage: done
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True)


def test_longest_gap_first_and_unstamped_lines_skipped(tmp_path):
    log = tmp_path / "job.log"
    log.write_text(LOG)
    out = run(str(log), "--top", "2")
    assert out.returncode == 0, out.stderr
    first, second = [line for line in out.stdout.splitlines() if " s  after:" in line]
    assert first.startswith("  18.5 s") and "07:29:31,000" in first
    assert second.startswith("  10.6 s") and "LAMIA SIDs: started" in second


@pytest.mark.parametrize(
    ("text", "expect"), [(None, "no such file"), ("no stamps\n", "fewer than two")]
)
def test_a_missing_or_unstamped_log_is_named(tmp_path, text, expect):
    log = tmp_path / "job.log"
    if text is not None:
        log.write_text(text)
    out = run(str(log))
    assert out.returncode == 2 and str(log) in out.stderr and expect in out.stderr
