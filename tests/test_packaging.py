"""The package lives in platform/sidrec; platform/ must never shadow the stdlib module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_no_platform_package_marker():
    assert not (REPO / "platform" / "__init__.py").exists()


def test_stdlib_platform_still_wins_from_repo_root():
    code = (
        "import platform, sidrec, pathlib; "
        "print(platform.system()); print(platform.__file__); print(sidrec.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] in {"Linux", "Darwin", "Windows"}
    assert not out[1].startswith(str(REPO)), f"platform resolved to {out[1]}"
    assert out[2].startswith(str(REPO / "platform" / "sidrec"))
