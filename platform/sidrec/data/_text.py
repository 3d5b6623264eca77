"""Helpers the dataset loaders share: the item-text renderer and the readers of
the plain-text formats (`user item item ...` sequence files, JSON, JSON lines).

Every reader raises `DataError` naming the file, the 1-based line where there
is one, and the field, so a bad input file can be fixed without a debugger.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from sidrec.data._errors import DataError

CATEGORY_SEPARATOR = " > "


def render_item_text(
    title: str,
    brand: str | None = None,
    categories: Sequence[str] = (),
    extra: Mapping[str, str] | None = None,
) -> str:
    """The default text an encoder embeds for an item, one `Key: value` per line.

    `Title: OPI Nail Lacquer\\nBrand: OPI\\nCategory: Makeup > Nails > Nail Polish`.
    Empty parts are left out, so an item with nothing known renders as "".
    """
    lines = []
    if title:
        lines.append(f"Title: {title}")
    if brand:
        lines.append(f"Brand: {brand}")
    if categories:
        lines.append(f"Category: {CATEGORY_SEPARATOR.join(categories)}")
    for key, value in (extra or {}).items():
        if value:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def clean_title(raw: str) -> str:
    # Amazon titles and brands carry raw HTML entities (`L&#39;Oreal`, `&amp;`);
    # an encoder should see the characters, not the markup.
    return html.unescape(raw).strip()


def missing_data_fix(dataset: str, data_dir: Path) -> str:
    return (
        f"copy the files there, or run "
        f"`python -m sidrec.data.download {dataset} --data-dir {data_dir}`"
    )


def require_file(folder: Path, name: str, dataset: str) -> Path:
    """`folder/name`, or a DataError naming that exact path and how to get it."""
    path = folder / name
    if not path.is_file():
        raise DataError(
            f"missing file: expected {path}; {missing_data_fix(dataset, folder.parent)}",
            file=path,
        )
    return path


def is_int(token: str) -> bool:
    # str.isdigit alone accepts non-ASCII digits such as '²', which int() rejects.
    return token.isascii() and token.isdigit()


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", file=path, line=e.lineno) from None


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(1-based line number, object) for each non-blank line."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg}", file=path, line=line_no) from None
            if not isinstance(obj, dict):
                raise DataError("expected a JSON object", file=path, line=line_no)
            records.append((line_no, obj))
    if not records:
        raise DataError("the item catalog is empty", file=path)
    return records


def get_field(obj: Mapping, key: str, kind: type | tuple[type, ...], path: Path, line: int | None):
    """obj[key], checked to be of `kind` (None is accepted only if kind allows it)."""
    if key not in obj:
        raise DataError("missing key", file=path, line=line, field=key)
    value = obj[key]
    # bool is an int subclass; an id of `true` is a broken file, not id 1.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise DataError(
            f"expected {_kind_name(kind)}, got {value!r}", file=path, line=line, field=key
        )
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def read_sequences(path: Path, item_of: Mapping[str, str], catalog: Path | None) -> pa.Table:
    """Read a `user_id item_id item_id ...` file (items chronological per line).

    item_of maps the file's item id to the item's source_id. There are no
    timestamps in this format: `timestamp` is the position 0..n-1 in the
    user's sequence and `row` the 1-based line. A repeated item stays
    (Yelp users revisit businesses).
    """
    users: list[str] = []
    items: list[str] = []
    steps: list[int] = []
    rows: list[int] = []
    line_of_user: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            parts = line.split()
            user = _check_sequence_line(parts, path, line_no, line_of_user)
            mapped = [item_of.get(t) for t in parts[1:]]
            if None in mapped:
                _raise_bad_item(parts[1:], item_of, path, line_no, catalog)
            users += [user] * len(mapped)
            items += mapped
            steps += range(len(mapped))
            rows += [line_no] * len(mapped)
    if not users:
        raise DataError("no interactions: the file is empty", file=path)
    return pa.table(
        {
            "user": pa.array(users, pa.string()),
            "item": pa.array(items, pa.string()),
            "timestamp": pa.array(steps, pa.int64()),
            "row": pa.array(rows, pa.int64()),
        }
    )


def _check_sequence_line(parts: list[str], path: Path, line_no: int, line_of_user: dict) -> str:
    if len(parts) < 2:
        raise DataError(
            "expected `user_id item_id [item_id ...]`: a user and at least one item",
            file=path,
            line=line_no,
            field="item_id" if parts else "user_id",
        )
    user = parts[0]
    if not is_int(user):
        raise DataError(f"{user!r} is not an integer", file=path, line=line_no, field="user_id")
    if user in line_of_user:
        # Two lines for one user would silently merge two sequences of unknown order.
        raise DataError(
            f"user {user} already has a sequence on line {line_of_user[user]}",
            file=path,
            line=line_no,
            field="user_id",
        )
    line_of_user[user] = line_no
    return user


def _raise_bad_item(tokens, item_of, path: Path, line_no: int, catalog: Path | None):
    token = next(t for t in tokens if t not in item_of)
    if not is_int(token):
        raise DataError(f"{token!r} is not an integer", file=path, line=line_no, field="item_id")
    where = f" ({catalog})" if catalog else ""
    raise DataError(
        f"item {token} is not in the item catalog{where}", file=path, line=line_no, field="item_id"
    )


def align_sequence_ids(other: Path, reference: Path) -> dict[str, str]:
    """Map the item ids of `other` to those of `reference`, two files holding the
    same users' sequences in the same order under different item numberings.

    Position-by-position alignment; any disagreement (user, length, or an id
    mapped two ways) is a DataError, so a successful map is a proven 1:1 map.
    """
    mapping: dict[str, str] = {}
    reverse: dict[str, str] = {}
    with open(other, encoding="utf-8") as fa, open(reference, encoding="utf-8") as fb:
        for line_no, (line_a, line_b) in enumerate(zip_longest(fa, fb), 1):
            if line_a is None or line_b is None:
                raise DataError(f"has a different number of lines than {reference}", file=other)
            a, b = line_a.split(), line_b.split()
            if not a or not b or a[0] != b[0] or len(a) != len(b):
                raise DataError(
                    f"line does not match {reference} line {line_no} (user or length differs)",
                    file=other,
                    line=line_no,
                )
            for x, y in zip(a[1:], b[1:], strict=True):
                if mapping.setdefault(x, y) != y or reverse.setdefault(y, x) != x:
                    raise DataError(
                        f"item {x} aligns with both {mapping[x]} and {y} in {reference}",
                        file=other,
                        line=line_no,
                        field="item_id",
                    )
    return mapping


def items_table(
    source_id: list[str],
    title: list[str],
    text: list[str],
    categories: list[list[str]],
    extra: Mapping[str, list[str]],
    path: Path,
) -> pa.Table:
    """The RawDataset items table; source ids must be unique."""
    if not source_id:
        raise DataError("the item catalog is empty", file=path)
    if len(set(source_id)) != len(source_id):
        seen: set[str] = set()
        dup = next(s for s in source_id if s in seen or seen.add(s))
        raise DataError(f"item {dup!r} appears twice", file=path, field="source_id")
    columns = {
        "source_id": pa.array(source_id, pa.string()),
        "title": pa.array(title, pa.string()),
        "text": pa.array(text, pa.string()),
        "categories": pa.array(categories, pa.list_(pa.string())),
    }
    columns.update({name: pa.array(values, pa.string()) for name, values in extra.items()})
    return pa.table(columns)


def check_unique_ids(ids: list[int], path: Path) -> None:
    # Interactions name items by this id: a duplicate would make them ambiguous.
    for before, after in zip(ids, ids[1:], strict=False):
        if before == after:
            raise DataError(f"item_id {after} appears twice", file=path, field="item_id")


def id_map(datamaps: object, key: str, path: Path) -> dict[str, str]:
    """A P5 datamaps `id2item`-style map, checked: integer keys, string values."""
    if not isinstance(datamaps, dict) or key not in datamaps:
        raise DataError("missing key", file=path, field=key)
    mapping = datamaps[key]
    if not isinstance(mapping, dict) or not mapping:
        raise DataError("expected a non-empty object", file=path, field=key)
    for k, v in mapping.items():
        if not is_int(k) or not isinstance(v, str):
            raise DataError(f"bad entry {k!r}: {v!r}", file=path, field=key)
    return mapping


def load_npy_dict(path: Path, key: str) -> dict:
    # TransRec stores a dict pickled in a 0-d object array; the only pickle
    # globals are numpy's (README), and callers have checked the sha256.
    obj = np.load(path, allow_pickle=True).item()
    if not isinstance(obj, dict) or key not in obj:
        raise DataError("missing key", file=path, field=key)
    return obj[key]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write one JSON object per line, atomically (temp file + rename)."""
    from sidrec.artifacts import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
