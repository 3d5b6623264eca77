"""The public datasets sidrec knows, and custom ones described by a column mapping.

    from sidrec.data.datasets import load_dataset
    raw = load_dataset("beauty", Path("/data"))   # reads /data/amazon_beauty/

Each folder's README.md (shipped with the data) gives provenance, counts and
caveats; `python -m sidrec.data.download NAME --data-dir DIR` fetches one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sidrec.data._amazon import load_beauty, load_sports
from sidrec.data._custom import CustomSpec, load_custom
from sidrec.data._errors import DataError
from sidrec.data._movielens import load_movielens_100k
from sidrec.data._raw import RawDataset
from sidrec.data._text import missing_data_fix, render_item_text
from sidrec.data._yelp import load_yelp

__all__ = [
    "DATASETS",
    "CustomSpec",
    "DataError",
    "DatasetSpec",
    "get_spec",
    "RawDataset",
    "load_custom",
    "load_dataset",
    "render_item_text",
]


@dataclass(frozen=True)
class DatasetSpec:
    """One public dataset: where it lives under the data dir and how to read it."""

    name: str
    folder: str  # sub-folder of the data dir
    # k of the k-core filter ingest applies; 0 = none. The Amazon and Yelp
    # files are already 5-core, so re-applying 5 only guards against edits.
    kcore: int
    description: str
    load: Callable[[Path], RawDataset]  # folder -> RawDataset


DATASETS: dict[str, DatasetSpec] = {
    "beauty": DatasetSpec(
        name="beauty",
        folder="amazon_beauty",
        kcore=5,
        description="Amazon Beauty 2014 5-core (S3-Rec/P5/TIGER): titles, category paths, "
        "brands; no timestamps",
        load=load_beauty,
    ),
    "sports": DatasetSpec(
        name="sports",
        folder="amazon_sports",
        kcore=5,
        description="Amazon Sports and Outdoors 2014 5-core (S3-Rec/P5): ids and opaque "
        "attribute ids only, no item text; no timestamps",
        load=load_sports,
    ),
    "yelp": DatasetSpec(
        name="yelp",
        folder="yelp",
        kcore=5,
        description="Yelp 2019 5-core (S3-Rec/P5): business names, flat tags and a derived "
        "coarse -> fine category path; no timestamps",
        load=load_yelp,
    ),
    "movielens_100k": DatasetSpec(
        name="movielens_100k",
        folder="movielens_100k",
        # Raw ratings; every user already has >= 20, so no filter is the convention.
        kcore=0,
        description="MovieLens 100K (GroupLens): titles, release dates, flat genres; "
        "unix timestamps",
        load=load_movielens_100k,
    ),
}


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


def load_dataset(name: str, data_dir: Path) -> RawDataset:
    """Read the public dataset `name` from `data_dir/<its folder>/`."""
    spec = get_spec(name)
    folder = Path(data_dir) / spec.folder
    if not folder.is_dir():
        raise DataError(
            f"dataset folder not found: expected {folder}; {missing_data_fix(name, Path(data_dir))}",
            file=folder,
        )
    return spec.load(folder)
