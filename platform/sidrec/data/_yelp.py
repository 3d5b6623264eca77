"""Yelp (2019 reviews, 5-core) in the S3-Rec / P5 preprocessing.

Business names and flat Yelp tags come from the derived `items.jsonl`; the
coarse -> fine category path from LLM-RecSys-ID's `closed_categories.json`,
which its authors built from tag frequency and co-occurrence (not a Yelp
taxonomy). See the folder's README.md.
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
    is_int,
    items_table,
    load_npy_dict,
    read_json,
    read_jsonl,
    read_sequences,
    render_item_text,
    require_file,
    write_jsonl,
)

# TransRec wrote the string "unkown" (sic) instead of a tag list for one
# business (item 12182, a bank); it means no tags.
NO_TAGS = ("unkown", "unknown")


def load_yelp(folder: Path) -> RawDataset:
    items_path = require_file(folder, "items.jsonl", "yelp")
    seq_path = require_file(folder, "sequential_data.txt", "yelp")
    closed_path = require_file(folder, "closed_categories.json", "yelp")
    records = _read_yelp_items(items_path)
    closed = read_json(closed_path)
    if not isinstance(closed, dict):
        raise DataError("expected an object: item id -> list of tags", file=closed_path)
    source_id, title, text, categories, tags, dataset_item_id = [], [], [], [], [], []
    dropped = 0
    for item_id, business_id, name, flat in records:
        path = closed.get(str(item_id), [])
        kept = [t for t in path if not is_int(t)]
        dropped += len(path) - len(kept)
        name = clean_title(name)
        source_id.append(business_id)
        title.append(name)
        text.append(render_item_text(name, categories=kept, extra={"Tags": ", ".join(flat)}))
        categories.append(kept)
        tags.append(json.dumps(flat, ensure_ascii=False))
        dataset_item_id.append(str(item_id))
    extra = {"tags": tags, "dataset_item_id": dataset_item_id}
    items = items_table(source_id, title, text, categories, extra, items_path)
    interactions = read_sequences(
        seq_path, dict(zip(dataset_item_id, source_id, strict=True)), items_path
    )
    notes = [
        "sequential_data.txt has no timestamps, only each user's chronological order: "
        "`timestamp` is the position 0..n-1 in the user's sequence; repeat visits are kept",
        "categories: LLM-RecSys-ID's closed_categories.json, a coarse -> fine ordering its "
        "authors derived from tag frequency and co-occurrence, not a Yelp taxonomy; "
        "`tags` holds Yelp's own flat tag list",
    ]
    if dropped:
        # Upstream leaked numbers such as '17059' into some paths; they name no category.
        notes.append(f"dropped {dropped} numeric entries from closed_categories.json paths")
    return RawDataset(
        name="yelp",
        items=items,
        interactions=interactions,
        has_timestamps=False,
        interactions_file=seq_path,
        items_file=items_path,
        input_files=[seq_path, items_path, closed_path],
        notes=notes,
    )


def _read_yelp_items(path: Path) -> list[tuple[int, str, str, list[str]]]:
    """(item_id, business_id, name, flat tags) in item_id order."""
    records = []
    for line, obj in read_jsonl(path):
        item_id = get_field(obj, "item_id", int, path, line)
        business_id = get_field(obj, "business_id", str, path, line)
        name = get_field(obj, "name", str, path, line)
        tags = get_field(obj, "categories", (list, str), path, line)
        if isinstance(tags, str) and tags in NO_TAGS:
            tags = []
        if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
            raise DataError("expected a list of strings", file=path, line=line, field="categories")
        records.append((item_id, business_id, name, tags))
    records.sort(key=lambda r: r[0])
    check_unique_ids([r[0] for r in records], path)
    return records


def derive_yelp_items(folder: Path) -> Path:
    """Rebuild `items.jsonl` from the upstream Yelp files, as its README describes.

    Names and flat tags come from TransRec (0-based ids aligned to the P5 ids
    through the two sequence files), the business_id from the P5 datamaps.
    Only call this on files whose sha256 was checked: the TransRec maps are
    pickles.
    """
    seq = require_file(folder, "sequential_data.txt", "yelp")
    to_p5 = align_sequence_ids(require_file(folder, "transrec/sequential_data.txt", "yelp"), seq)
    names = load_npy_dict(require_file(folder, "transrec/title_maps.npy", "yelp"), "id2title")
    tags = load_npy_dict(require_file(folder, "transrec/category_maps.npy", "yelp"), "id2category")
    datamaps_path = require_file(folder, "datamaps.json", "yelp")
    id2item = id_map(read_json(datamaps_path), "id2item", datamaps_path)
    rows = [
        {
            "item_id": int(p5_id),
            "business_id": id2item[p5_id],
            "name": names[transrec_id],
            "categories": tags[transrec_id],
            "transrec_id": int(transrec_id),
        }
        for transrec_id, p5_id in to_p5.items()
    ]
    return write_jsonl(folder / "items.jsonl", sorted(rows, key=lambda r: r["item_id"]))
