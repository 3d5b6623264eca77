"""Progress: a bar on a terminal, a log line once the log has been quiet ~10 s otherwise."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest

import sidrec.progress as progress_module
from sidrec.progress import Progress, quiet_seconds


@pytest.fixture
def fast(monkeypatch, caplog):
    """Quiet after 50 ms instead of 10 s; capture sidrec's INFO lines."""
    monkeypatch.setattr(progress_module, "EVERY_S", 0.05)
    monkeypatch.setenv("SIDREC_PROGRESS", "log")
    caplog.set_level(logging.INFO, logger="sidrec")
    return caplog


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sidrec.progress"]


def test_a_quiet_log_gets_a_line_with_count_eta_and_fields(fast):
    reads = []

    def loss():
        reads.append(1)
        return 1.5

    with Progress("epoch 3", total=10, unit="steps") as progress:
        logging.getLogger("sidrec.somewhere").info("a line just now")  # the log is busy
        progress.update(2, loss=loss)  # the log was not quiet for 50 ms yet: nothing
        time.sleep(0.08)
        progress.update(2, loss=loss)
    lines = _lines(fast)
    assert len(lines) == 1
    assert lines[0].startswith("epoch 3 4/10 steps (")
    assert "s left)" in lines[0] and lines[0].endswith("loss=1.5")
    assert len(reads) == 1  # a callable field is read only when shown


def test_a_busy_log_gets_no_extra_line(fast):
    other = logging.getLogger("sidrec.somewhere")
    progress = Progress("palettes", total=100, unit="items")
    for _ in range(5):
        time.sleep(0.03)
        other.info("a line from elsewhere")  # never 50 ms of silence
        progress.update(10)
    assert _lines(fast) == []
    assert quiet_seconds() < 0.05


def test_other_ranks_and_off_show_nothing(fast, monkeypatch, capsys):
    time.sleep(0.08)
    Progress("rank 1", total=3, enabled=False).update(3)
    monkeypatch.setenv("SIDREC_PROGRESS", "off")
    Progress("off", total=3).update(3)
    assert _lines(fast) == []
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_a_tqdm_bar(monkeypatch, capsys):
    monkeypatch.setenv("SIDREC_PROGRESS", "bar")
    with Progress("lamia: palettes", total=4, unit="items") as progress:
        progress.update(4)
    err = capsys.readouterr().err
    assert "lamia: palettes" in err and "0/4 [" in err  # tqdm redraws at most every 0.1 s


def test_a_bad_mode_names_the_variable(monkeypatch):
    monkeypatch.setenv("SIDREC_PROGRESS", "loud")
    with pytest.raises(ValueError, match="SIDREC_PROGRESS='loud'"):
        Progress("x")


def test_a_job_s_silence_counts_from_its_last_line_not_from_the_first_progress():
    # A fresh process: the job's stage line, 0.5 s of loading, then the first Progress.
    # The log has been quiet since the stage line, and the progress line is due then.
    code = (
        "import logging, time\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from sidrec.summary import StageClock\n"
        "with StageClock().stage('palettes'):\n"
        "    time.sleep(0.5)\n"
        "    from sidrec.progress import Progress, quiet_seconds\n"
        "    Progress('palettes', total=3)\n"
        "    print(round(quiet_seconds(), 2))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 0.5 <= float(out.stdout) < 5.0
