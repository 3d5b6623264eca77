"""The longest silences in a job's log: gaps between consecutive timestamped lines.

    python jobs/train_lamia.py ... 2>&1 | tee job.log
    python bench/log_silence.py job.log [--top 5]

Issue 16's bar: no stretch longer than 15 s. Lines without a leading
`YYYY-MM-DD HH:MM:SS[,mmm]` timestamp (tables, Ray's prefixed lines) are
skipped: they neither start nor end a silence.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:[,.](\d{3}))?")


def stamped_lines(text: str) -> list[tuple[datetime, str]]:
    lines = []
    for line in text.splitlines():
        m = STAMP.match(line)
        if m:
            at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
            lines.append((at + timedelta(milliseconds=int(m.group(2) or 0)), line))
    return lines


def silences(text: str) -> list[tuple[float, str, str]]:
    """(seconds, line before, line after) for every gap, longest first."""
    lines = stamped_lines(text)
    gaps = [
        ((b[0] - a[0]).total_seconds(), a[1], b[1]) for a, b in zip(lines, lines[1:], strict=False)
    ]
    return sorted(gaps, key=lambda gap: -gap[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("log", type=Path)
    p.add_argument("--top", type=int, default=3)
    args = p.parse_args(argv)
    if not args.log.is_file():
        p.error(f"{args.log}: no such file")
    gaps = silences(args.log.read_text(errors="replace"))
    if not gaps:
        p.error(f"{args.log}: fewer than two timestamped lines")
    for seconds, before, after in gaps[: args.top]:
        print(f"{seconds:6.1f} s  after: {before[:140]}\n{'':9}before: {after[:140]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
