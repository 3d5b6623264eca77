"""MovieLens 100K, the original GroupLens files (u.data, u.item, u.genre).

Every rating is kept as an implicit interaction (the usual sequential
recommendation convention); genres are flat flags, so `categories` is empty
and the genre names go to the `genres` column.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from sidrec.data._errors import DataError
from sidrec.data._raw import RawDataset
from sidrec.data._text import is_int, items_table, render_item_text, require_file

# u.item: item_id|title|release date|video release date|IMDb URL|<genre flags>
ITEM_FIELDS = 5
# u.data: user_id \t item_id \t rating \t unix_timestamp, all integers
DATA_FIELDS = ("user_id", "item_id", "rating", "timestamp")


def load_movielens_100k(folder: Path) -> RawDataset:
    data_path = require_file(folder, "u.data", "movielens_100k")
    item_path = require_file(folder, "u.item", "movielens_100k")
    genre_path = require_file(folder, "u.genre", "movielens_100k")
    genres = _read_genres(genre_path)
    source_id, title, text, release_date, genre_text = [], [], [], [], []
    for line_no, fields in _lines(item_path, "|", "latin-1"):
        item_id, name, released, flags = _parse_item(fields, len(genres), item_path, line_no)
        names = [g for g, flag in zip(genres, flags, strict=True) if flag == "1"]
        source_id.append(item_id)
        title.append(name)
        release_date.append(released)
        genre_text.append(" | ".join(names))
        text.append(
            render_item_text(name, extra={"Genres": ", ".join(names), "Released": released})
        )
    extra = {"genres": genre_text, "release_date": release_date}
    items = items_table(source_id, title, text, [[] for _ in source_id], extra, item_path)
    interactions = _read_ratings(data_path, set(source_id), item_path)
    notes = [
        "every rating (1-5) is kept as an implicit interaction",
        "genres are 19 flat flags, not a hierarchy: categories is empty",
    ]
    return RawDataset(
        name="movielens_100k",
        items=items,
        interactions=interactions,
        has_timestamps=True,
        interactions_file=data_path,
        items_file=item_path,
        input_files=[data_path, item_path, genre_path],
        notes=notes,
    )


def _lines(path: Path, sep: str, encoding: str):
    """(1-based line number, fields) per non-blank line."""
    with open(path, encoding=encoding) as f:
        for line_no, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line:
                yield line_no, line.split(sep)


def _read_genres(path: Path) -> list[str]:
    """Genre names by flag position (u.genre: `name|index`, ends with a blank line)."""
    by_index = {}
    for line_no, fields in _lines(path, "|", "latin-1"):
        if len(fields) != 2 or not is_int(fields[1]):
            raise DataError("expected `genre|index`", file=path, line=line_no, field="index")
        by_index[int(fields[1])] = fields[0]
    if sorted(by_index) != list(range(len(by_index))) or not by_index:
        raise DataError(
            f"genre indices must be 0..n-1, got {sorted(by_index)}", file=path, field="index"
        )
    return [by_index[i] for i in range(len(by_index))]


def _parse_item(fields: list[str], n_genres: int, path: Path, line_no: int):
    if len(fields) != ITEM_FIELDS + n_genres:
        raise DataError(
            f"expected {ITEM_FIELDS + n_genres} '|'-separated fields, got {len(fields)}",
            file=path,
            line=line_no,
            field="genre flags" if len(fields) > ITEM_FIELDS else "title",
        )
    if not is_int(fields[0]):
        raise DataError(
            f"{fields[0]!r} is not an integer", file=path, line=line_no, field="item_id"
        )
    flags = fields[ITEM_FIELDS:]
    if any(flag not in ("0", "1") for flag in flags):
        raise DataError("genre flags must be 0 or 1", file=path, line=line_no, field="genre flags")
    return fields[0], fields[1].strip(), fields[2].strip(), flags


def _read_ratings(path: Path, catalog: set[str], item_path: Path) -> pa.Table:
    users, items, timestamps, rows = [], [], [], []
    for line_no, fields in _lines(path, "\t", "latin-1"):
        if len(fields) != len(DATA_FIELDS):
            raise DataError(
                f"expected {len(DATA_FIELDS)} tab-separated fields "
                f"({', '.join(DATA_FIELDS)}), got {len(fields)}",
                file=path,
                line=line_no,
                field=DATA_FIELDS[min(len(fields), len(DATA_FIELDS) - 1)],
            )
        for name, value in zip(DATA_FIELDS, fields, strict=True):
            if not is_int(value):
                raise DataError(f"{value!r} is not an integer", file=path, line=line_no, field=name)
        user, item, _rating, timestamp = fields
        if item not in catalog:
            raise DataError(
                f"item {item} is not in {item_path}", file=path, line=line_no, field="item_id"
            )
        users.append(user)
        items.append(item)
        timestamps.append(int(timestamp))
        rows.append(line_no)
    if not users:
        raise DataError("no interactions: the file is empty", file=path)
    return pa.table(
        {
            "user": pa.array(users, pa.string()),
            "item": pa.array(items, pa.string()),
            "timestamp": pa.array(timestamps, pa.int64()),
            "row": pa.array(rows, pa.int64()),
        }
    )
