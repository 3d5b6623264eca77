"""Amazon Beauty and Sports (2014, 5-core) in the S3-Rec / P5 preprocessing.

See the README.md in each data folder for provenance. Beauty has titles,
category paths and (partly) brands through the derived `items.jsonl`; Sports
has ASINs and opaque attribute ids only.
"""

from __future__ import annotations

import json
from pathlib import Path

from sidrec.data._errors import DataError
from sidrec.data._raw import RawDataset
from sidrec.data._text import (
    align_sequence_ids,
    check_unique_ids,
    clean_title,
    get_field,
    id_map,
    items_table,
    load_npy_dict,
    read_json,
    read_jsonl,
    read_sequences,
    render_item_text,
    require_file,
    write_jsonl,
)

NO_TIMESTAMPS_NOTE = (
    "{file} has no timestamps, only each user's chronological order: "
    "`timestamp` is the position 0..n-1 in the user's sequence"
)


def load_beauty(folder: Path) -> RawDataset:
    items_path = require_file(folder, "items.jsonl", "beauty")
    seq_path = require_file(folder, "Beauty.txt", "beauty")
    records = _read_beauty_items(items_path)
    root = shared_root([paths[0] if paths else [] for _, _, _, paths, _ in records])
    source_id, title, text, categories = [], [], [], []
    brand, other_categories, dataset_item_id = [], [], []
    for item_id, asin, raw_title, paths, raw_brand in records:
        first = paths[0] if paths else []
        path = first[1:] if root is not None else first
        name, maker = clean_title(raw_title), clean_title(raw_brand or "")
        source_id.append(asin)
        title.append(name)
        text.append(render_item_text(name, maker, path))
        categories.append(path)
        brand.append(maker)
        # Later paths keep their own roots: they differ ("Clothing, Shoes & Jewelry").
        other_categories.append(json.dumps(paths[1:], ensure_ascii=False) if len(paths) > 1 else "")
        dataset_item_id.append(str(item_id))
    extra = {
        "brand": brand,
        "other_categories": other_categories,
        "dataset_item_id": dataset_item_id,
    }
    items = items_table(source_id, title, text, categories, extra, items_path)
    interactions = read_sequences(
        seq_path, dict(zip(dataset_item_id, source_id, strict=True)), items_path
    )
    notes = [NO_TIMESTAMPS_NOTE.format(file="Beauty.txt")]
    if root is not None:
        notes.append(f"dropped the category root {root!r}, shared by every item's first path")
    notes.append(
        "brand is known only for brands with at least 5 items (S3-Rec's threshold); else ''"
    )
    return RawDataset(
        name="beauty",
        items=items,
        interactions=interactions,
        has_timestamps=False,
        interactions_file=seq_path,
        items_file=items_path,
        input_files=[seq_path, items_path],
        notes=notes,
    )


def _read_beauty_items(path: Path) -> list[tuple[int, str, str, list[list[str]], str | None]]:
    """(item_id, asin, title, category paths, brand) in item_id order."""
    records = []
    for line, obj in read_jsonl(path):
        item_id = get_field(obj, "item_id", int, path, line)
        asin = get_field(obj, "asin", str, path, line)
        title = get_field(obj, "title", str, path, line)
        paths = get_field(obj, "categories", list, path, line)
        if not all(isinstance(p, list) and all(isinstance(c, str) for c in p) for p in paths):
            raise DataError(
                "expected a list of category paths (lists of strings)",
                file=path,
                line=line,
                field="categories",
            )
        brand = get_field(obj, "brand", (str, type(None)), path, line)
        records.append((item_id, asin, title, paths, brand))
    records.sort(key=lambda r: r[0])
    check_unique_ids([r[0] for r in records], path)
    return records


def shared_root(first_paths: list[list[str]]) -> str | None:
    """The first category level if every item's path starts with the same one.

    A root that every item shares ("Beauty") tells items nothing apart and
    would waste a code level, so loaders drop it; a catalog with mixed roots
    keeps them.
    """
    roots = {path[0] if path else None for path in first_paths}
    if len(roots) == 1 and None not in roots:
        return roots.pop()
    return None


def load_sports(folder: Path) -> RawDataset:
    seq_path = require_file(folder, "Sports_and_Outdoors.txt", "sports")
    maps_path = require_file(folder, "datamaps.json", "sports")
    attr_path = require_file(folder, "Sports_and_Outdoors_item2attributes.json", "sports")
    id2item = id_map(read_json(maps_path), "id2item", maps_path)
    item2attributes = read_json(attr_path)
    ids = sorted(id2item, key=int)
    source_id = [id2item[i] for i in ids]
    attribute_ids = [_attribute_ids(item2attributes, i, attr_path) for i in ids]
    empty = [""] * len(ids)
    items = items_table(
        source_id, empty, empty, [[] for _ in ids], {"attribute_ids": attribute_ids}, maps_path
    )
    interactions = read_sequences(seq_path, id2item, maps_path)
    notes = [
        NO_TIMESTAMPS_NOTE.format(file="Sports_and_Outdoors.txt"),
        "there is no item text: title, text and categories are empty; tags must be generated",
        "attribute_ids are opaque S3-Rec attribute ids (their names cannot be decoded)",
    ]
    return RawDataset(
        name="sports",
        items=items,
        interactions=interactions,
        has_timestamps=False,
        interactions_file=seq_path,
        items_file=maps_path,
        input_files=[seq_path, maps_path, attr_path],
        notes=notes,
    )


def _attribute_ids(item2attributes: dict, item_id: str, path: Path) -> str:
    ids = item2attributes.get(item_id, [])
    if not isinstance(ids, list) or not all(isinstance(a, int) for a in ids):
        raise DataError("expected a list of integer attribute ids", file=path, field=item_id)
    return " ".join(map(str, ids))


def derive_beauty_items(folder: Path) -> Path:
    """Rebuild `items.jsonl` from the upstream Beauty files, as its README describes.

    Title and categories come from TransRec (its own 0-based ids, aligned to
    the Beauty.txt ids through the two sequence files), the ASIN from the P5
    datamaps, the brand from S3-Rec's item2attributes. Only call this on files
    whose sha256 was checked: the TransRec maps are pickles.
    """
    seq = require_file(folder, "Beauty.txt", "beauty")
    to_p5 = align_sequence_ids(require_file(folder, "transrec/sequential_data.txt", "beauty"), seq)
    titles = load_npy_dict(require_file(folder, "transrec/title_maps.npy", "beauty"), "id2title")
    paths = load_npy_dict(
        require_file(folder, "transrec/category_map.npy", "beauty"), "id2category"
    )
    datamaps_path = require_file(folder, "datamaps.json", "beauty")
    datamaps = read_json(datamaps_path)
    id2item = id_map(datamaps, "id2item", datamaps_path)
    attributes = _s3rec_attribute_names(datamaps, datamaps_path)
    item2attributes = read_json(require_file(folder, "Beauty_item2attributes.json", "beauty"))
    rows = []
    for transrec_id, p5_id in to_p5.items():
        names = [_attribute_name(attributes, a, p5_id) for a in item2attributes.get(p5_id, [])]
        rows.append(
            {
                "item_id": int(p5_id),
                "asin": id2item[p5_id],
                "title": titles[transrec_id],
                "categories": paths[transrec_id],
                "brand": _brand(names, paths[transrec_id]),
                "transrec_id": int(transrec_id),
            }
        )
    return write_jsonl(folder / "items.jsonl", sorted(rows, key=lambda r: r["item_id"]))


def _s3rec_attribute_names(datamaps: dict, path: Path) -> dict[int, str]:
    # S3-Rec kept attributes seen >= 5 times and renumbered them 1..K in
    # datamaps-id order; item2attributes uses that numbering (README, verified).
    counts = datamaps.get("attributeid2num")
    names = datamaps.get("id2attribute")
    if not isinstance(counts, dict) or not isinstance(names, dict):
        raise DataError("missing key", file=path, field="attributeid2num/id2attribute")
    kept = sorted(int(k) for k, n in counts.items() if n >= 5)
    return {i: names[str(a)] for i, a in enumerate(kept, 1)}


def _attribute_name(attributes: dict[int, str], attribute_id: int, item_id: str) -> str:
    if attribute_id not in attributes:
        raise DataError(
            f"attribute id {attribute_id} is outside the {len(attributes)} S3-Rec attributes",
            file="Beauty_item2attributes.json",
            field=item_id,
        )
    return attributes[attribute_id]


def _brand(names: list[str], paths: list[list[str]]) -> str | None:
    # The decoded attributes are an optional brand first, then category names
    # from the item's own paths; S3-Rec also kept the empty brand "", which
    # means no brand.
    in_paths = {c for p in paths for c in p}
    if names and names[0] not in in_paths and names[0]:
        return names[0]
    return None
