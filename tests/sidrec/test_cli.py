"""The job runner's exit codes and the one atomic write, as a user or a reader sees them."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidrec.artifacts import atomic_path, write_json_atomic, write_text_atomic
from sidrec.cli import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, run_job
from sidrec.data import DataError
from sidrec.embed.resources import ResourceError

REPO = Path(__file__).resolve().parents[2]


def _exit_code(main, bad_input=()) -> int:
    with pytest.raises(SystemExit) as stop:
        run_job(main, lambda: argparse.Namespace(), bad_input=bad_input)
    return stop.value.code


def test_ok_exits_0():
    assert _exit_code(lambda args: None) == EXIT_OK == 0


def test_bad_input_exits_2_naming_file_and_field(capsys):
    def main(args):
        raise DataError("not an integer", file="Beauty.txt", line=17, field="item_id")

    assert _exit_code(main) == EXIT_BAD_INPUT == 2
    err = capsys.readouterr().err
    assert "Beauty.txt:17" in err and "item_id" in err and "Traceback" not in err


def test_listed_errors_and_systemexit_messages_are_bad_input(capsys):
    def no_gpu(args):
        raise ResourceError("asked for 1 GPU, the cluster has 0: drop --use-gpu")

    assert _exit_code(no_gpu, bad_input=(ResourceError,)) == 2
    assert _exit_code(no_gpu) == 1  # not listed: an internal error
    capsys.readouterr()

    def flag(args):
        raise SystemExit("--num-workers must be >= 0")

    assert _exit_code(flag) == 2
    assert capsys.readouterr().err.strip() == "error: --num-workers must be >= 0"


def test_internal_error_exits_1_with_traceback(capsys):
    def main(args):
        raise KeyError("a bug")

    assert _exit_code(main) == EXIT_INTERNAL == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError" in err


def test_a_real_job_reports_a_bad_set_with_exit_2(tmp_path):
    """Argument errors of a real job, end to end in a fresh interpreter."""
    out = subprocess.run(
        [
            sys.executable,
            "jobs/train_rqvae.py",
            "--artifact-root",
            str(tmp_path),
            "--set",
            "epochz=3",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO / "platform")},
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "epochz" in out.stderr and "Traceback" not in out.stderr


def test_atomic_path_renames_on_success_and_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "sub" / "table.json"
    write_json_atomic(dest, {"b": 1, "a": [1, 2]})
    assert json.loads(dest.read_text()) == {"a": [1, 2], "b": 1}

    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half a file")
        assert tmp.parent == dest.parent and tmp.suffix == ".json"
        raise RuntimeError("writer crashed")
    # The old content survives, and no temporary file is left behind.
    assert json.loads(dest.read_text()) == {"a": [1, 2], "b": 1}
    assert sorted(p.name for p in dest.parent.iterdir()) == ["table.json"]

    write_text_atomic(dest, "new\n")
    assert dest.read_text() == "new\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["table.json"]
