"""Progress for every step that can take more than ~10 s.

On a terminal: a tqdm bar with its rate and ETA. Anywhere else (a Ray worker,
`ray job logs`, a file): a log line, but only once the log has been quiet for
~10 s, so a busy log gets no extra lines and no stretch of it stays silent for
much longer than 10 s (one unit of work at most).

    with Progress("sidgpt epoch 3", total=len(batches), unit="batch") as progress:
        for batch in batches:
            ...
            progress.update(loss=lambda: float(total) / steps)  # read only when shown

`SIDREC_PROGRESS=bar|log|off` overrides the terminal check (`auto`, the default).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["EVERY_S", "Progress", "quiet_seconds", "watch_log"]

EVERY_S = 10.0  # the longest a log may stay silent, give or take one unit of work
ENV = "SIDREC_PROGRESS"

log = logging.getLogger("sidrec.progress")


class _LastLine(logging.Handler):
    """Remembers when a sidrec logger last wrote a line: a handler on the
    `sidrec` logger sees the records of all its children."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.at = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        self.at = time.monotonic()


def _last_line() -> _LastLine:
    root = logging.getLogger("sidrec")
    for handler in root.handlers:
        if isinstance(handler, _LastLine):
            return handler
    handler = _LastLine()
    root.addHandler(handler)
    return handler


def watch_log() -> None:
    """Start timing the log's silences now. A job calls it before its first line
    (StageClock does): a clock first made by a Progress would count the silence
    from that Progress, not from the last line the job wrote."""
    _last_line()


def quiet_seconds() -> float:
    """Seconds since a sidrec logger last wrote a line."""
    return time.monotonic() - _last_line().at


def _mode() -> str:
    mode = os.environ.get(ENV, "auto").strip().lower()
    if mode not in ("auto", "bar", "log", "off"):
        raise ValueError(f"{ENV}={mode!r}: expected auto, bar, log or off")
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "log"
    return mode


def _show(value: Any) -> str:
    value = value() if callable(value) else value
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """Counts units of one long step and shows them as a bar or a log line.

    desc: what runs ("lamia epoch 0", "palettes"); total: units expected
    (None: unknown, no ETA); fields given to `update` are shown beside the
    count; a callable is called only when shown (e.g. a loss read that costs
    a device sync). `enabled=False` (other Ray ranks) shows nothing.
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        unit: str = "it",
        enabled: bool = True,
        logger: logging.Logger | None = None,
    ) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.count = 0
        self.began = time.monotonic()
        self._log = logger or log
        self._mode = _mode() if enabled else "off"
        self._clock = _last_line()
        self._bar = None
        self._fields_at = self.began
        if self._mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)

    def update(self, n: int = 1, **fields: Any | Callable[[], Any]) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
            now = time.monotonic()
            if fields and now - self._fields_at >= 1.0:
                self._bar.set_postfix({k: _show(v) for k, v in fields.items()}, refresh=False)
                self._fields_at = now
        elif self._mode == "log" and time.monotonic() - self._clock.at >= EVERY_S:
            self._log.info("%s", self.line(**fields))

    def line(self, **fields: Any) -> str:
        """`desc 40/124 batch (10 s, ~21 s left) loss=1.53`."""
        elapsed = time.monotonic() - self.began
        if self.total:
            left = elapsed / max(self.count, 1) * max(self.total - self.count, 0)
            text = f"{self.desc} {self.count}/{self.total} {self.unit} "
            text += f"({elapsed:.0f} s, ~{left:.0f} s left)"
        else:
            text = f"{self.desc} {self.count} {self.unit} ({elapsed:.0f} s)"
        shown = " ".join(f"{k}={_show(v)}" for k, v in fields.items())
        return f"{text} {shown}" if shown else text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
