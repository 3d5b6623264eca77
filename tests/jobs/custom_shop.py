"""A small synthetic shop catalog in the shape a user brings (items.jsonl with title,
brand, description and a category list; interactions.csv; spec.yaml), for the
custom-catalog tests. Users mostly stay in one department, so a recommender has
something to learn and SIDs have clusters to find.

    python tests/jobs/custom_shop.py /tmp/shop     # writes /tmp/shop/{items.jsonl,interactions.csv,spec.yaml}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

DEPARTMENTS = {
    "Kitchen": (["Cookware", "Knives"], ["pan", "skillet", "knife", "wok", "pot", "cleaver"]),
    "Garden": (["Tools", "Seeds"], ["trowel", "rake", "shears", "tomato seeds", "hose", "spade"]),
    "Audio": (["Headphones", "Speakers"], ["earbuds", "headset", "speaker", "soundbar", "amp"]),
    "Books": (["Fiction", "Cooking"], ["novel", "thriller", "cookbook", "anthology", "memoir"]),
    "Sport": (
        ["Running", "Cycling"],
        ["running shoes", "bike helmet", "jersey", "bottle", "gloves"],
    ),
}
ADJECTIVES = ["compact", "classic", "premium", "light", "sturdy", "vintage", "smart", "eco"]
BRANDS = ["Acme", "Nordby", "Kestrel", "Umbra", "Pico"]


def shop_items(num_items: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    names = list(DEPARTMENTS)
    rows = []
    for i in range(num_items):
        dept = names[i % len(names)]
        subs, nouns = DEPARTMENTS[dept]
        noun = nouns[int(rng.integers(len(nouns)))]
        adjective = ADJECTIVES[int(rng.integers(len(ADJECTIVES)))]
        rows.append(
            {
                "sku": f"SKU-{i:04d}",
                "name": f"{adjective.title()} {noun} {i}",
                "brand": BRANDS[int(rng.integers(len(BRANDS)))],
                "description": f"A {adjective} {noun} for {dept.lower()} lovers.",
                "path": [dept, subs[int(rng.integers(len(subs)))]],
            }
        )
    return rows


def shop_events(items: list[dict], num_users: int, seed: int = 0) -> pa.Table:
    """5-12 events per user, 80% from the user's favourite department."""
    rng = np.random.default_rng(seed + 1)
    by_dept: dict[str, list[str]] = {}
    for item in items:
        by_dept.setdefault(item["path"][0], []).append(item["sku"])
    names = list(by_dept)
    users, skus, stamps = [], [], []
    for u in range(num_users):
        favourite = names[u % len(names)]
        for t in range(int(rng.integers(5, 13))):
            dept = favourite if rng.random() < 0.8 else names[int(rng.integers(len(names)))]
            users.append(f"user-{u}")
            skus.append(by_dept[dept][int(rng.integers(len(by_dept[dept])))])
            stamps.append(1_700_000_000 + 3600 * t + u)
    return pa.table({"customer": users, "sku": skus, "ts": pa.array(stamps, pa.int64())})


SPEC = """\
# The shop's own catalog: which file and column means what (sidrec.data.CustomSpec).
name: {name}
items_path: {items}
interactions_path: {events}
item_id: sku
title: name
categories: path
attributes: [brand, description]
user_id: customer
interaction_item_id: sku
timestamp: ts
"""


def write_shop(
    folder: Path,
    num_items: int = 300,
    num_users: int = 300,
    name: str = "shop",
    fmt: str = "jsonl+csv",
) -> Path:
    """Write the catalog into `folder` and return its spec.yaml.

    fmt "jsonl+csv": items.jsonl and interactions.csv; "parquet": both Parquet.
    """
    folder.mkdir(parents=True, exist_ok=True)
    items = shop_items(num_items)
    events = shop_events(items, num_users)
    if fmt == "parquet":
        item_file, event_file = "items.parquet", "interactions.parquet"
        pq.write_table(pa.Table.from_pylist(items), folder / item_file)
        pq.write_table(events, folder / event_file)
    else:
        item_file, event_file = "items.jsonl", "interactions.csv"
        (folder / item_file).write_text("".join(json.dumps(row) + "\n" for row in items))
        pa_csv.write_csv(events, folder / event_file)
    spec = folder / "spec.yaml"
    spec.write_text(SPEC.format(name=name, items=item_file, events=event_file))
    return spec


if __name__ == "__main__":
    # python tests/jobs/custom_shop.py FOLDER: a shop to try "Your own catalog" on.
    import sys

    print(write_shop(Path(sys.argv[1])))
