"""The one error type for bad input data: it always names where the fault is."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad or missing input data.

    The message names the file, and where known the line (1-based) or row
    (0-based) and the field at fault, so a user can go straight to it:
    `Beauty.txt:17: field 'item_id': 'x3' is not an integer`.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        row: int | None = None,
        field: str | None = None,
    ):
        self.file = str(file) if file is not None else None
        self.line = line
        self.row = row
        self.field = field
        self.reason = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f":{self.line}"
        elif self.row is not None:
            where += f" row {self.row}"
        parts = [where] if where else []
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        parts.append(self.reason)
        return ": ".join(parts)
