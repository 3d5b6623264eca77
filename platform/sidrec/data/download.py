"""Fetch a public dataset from its official upstream files, checked by sha256.

    python -m sidrec.data.download beauty --data-dir /data
    python -m sidrec.data.download movielens_100k --data-dir /data --base-url http://mirror:8000

Files land in `DATA_DIR/<folder>/` (the folder `sidrec.data.datasets` reads),
each written to a temp file and renamed only once its sha256 matches, so a
half-written or tampered file is never left where a loader would read it.
Files already present with the right hash are kept without any network
access. The Amazon and Yelp files are pinned to the upstream commits named
in each folder's README.md; MovieLens comes from GroupLens' zip, whose
member files (not the zip) are checked.

`items.jsonl` of beauty and yelp is derived (no one hosts it): once its
upstream inputs are in place it is rebuilt from them, so on an offline
machine copy the listed files in by hand and run the command again.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sidrec.data._amazon import derive_beauty_items
from sidrec.data._errors import DataError
from sidrec.data._yelp import derive_yelp_items
from sidrec.data.locate import ENV_DATA_DIR

__all__ = [
    "SOURCES",
    "DatasetSource",
    "RemoteFile",
    "derive_beauty_items",
    "derive_yelp_items",
    "download",
    "fetch_files",
    "main",
]


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset folder and where its official copy lives."""

    name: str  # path inside the dataset folder, e.g. "transrec/title_maps.npy"
    url: str
    sha256: str  # of the file as it lands in the folder
    member: str | None = None  # path inside the zip archive at `url`, if it is one


@dataclass(frozen=True)
class DatasetSource:
    folder: str  # sub-folder of the data dir, as in sidrec.data.datasets
    files: tuple[RemoteFile, ...]
    # A file nobody hosts, rebuilt from `files` after they are in place.
    derived: str | None = None
    derive: Callable[[Path], Path] | None = None
    derived_sha256: str | None = None


S3REC = "https://raw.githubusercontent.com/aHuiWang/CIKM2020-S3Rec/e6c774da92dba847b00ac89e8bfc5c55cc44d378/data"
TRANSREC = "https://raw.githubusercontent.com/Linxyhaha/TransRec/286ab56a8cf2e99b2e604d383e73026454505975/data"
P5_REPO = "https://raw.githubusercontent.com/Wenyueh/LLM-RecSys-ID"
P5_BEAUTY = f"{P5_REPO}/377977a29e68e18842ffa06e96e8be05825dd524/data/beauty"
P5_SPORTS = f"{P5_REPO}/d5d5e8b2471fe074308d2a2615f40e0a879eb8be/data/sports"
P5_YELP = f"{P5_REPO}/77eaca3446b08a2c8cc44d165c791488e04c0d18/data/yelp"
ML_100K = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"

# Every commit is the full one the data READMEs name (the commit that last
# changed the file); every sha256 was computed from the checked copies.
SOURCES: dict[str, DatasetSource] = {
    "beauty": DatasetSource(
        folder="amazon_beauty",
        files=(
            RemoteFile(
                "Beauty.txt",
                f"{S3REC}/Beauty.txt",
                "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
            ),
            RemoteFile(
                "Beauty_item2attributes.json",
                f"{S3REC}/Beauty_item2attributes.json",
                "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
            ),
            RemoteFile(
                "datamaps.json",
                f"{P5_BEAUTY}/datamaps.json",
                "715ab04838ff1ba21238475ed453a89e8c30aa6214b904d27a79e4168fc7b612",
            ),
            RemoteFile(
                "transrec/title_maps.npy",
                f"{TRANSREC}/beauty/rec_data/title_maps.npy",
                "2a20df91bf797e6713b8dc6cbb55bc1cb46bb4d4f27a8dc8bc33260628fbc980",
            ),
            RemoteFile(
                "transrec/category_map.npy",
                f"{TRANSREC}/beauty/rec_data/category_map.npy",
                "0eadf691187a45bc6397fd1040142cfeab0bf96f25fd6f3f1f09f61f72334213",
            ),
            RemoteFile(
                "transrec/sequential_data.txt",
                f"{TRANSREC}/beauty/rec_data/sequential_data.txt",
                "b5c0b32e3f3629fdcd9e6b2c8541c83a408608aeb7ad4eae131bcd694bdb9981",
            ),
        ),
        derived="items.jsonl",
        derive=derive_beauty_items,
        derived_sha256="138d98de2888926d5b345a9fc48dbd800cd4dabc547fd439ed5bad1838e26b70",
    ),
    "sports": DatasetSource(
        folder="amazon_sports",
        files=(
            RemoteFile(
                "Sports_and_Outdoors.txt",
                f"{S3REC}/Sports_and_Outdoors.txt",
                "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
            ),
            RemoteFile(
                "Sports_and_Outdoors_item2attributes.json",
                f"{S3REC}/Sports_and_Outdoors_item2attributes.json",
                "7fb10733ac4f1811384a52144cdefa7fcc7536fa80a7232c5da9bd789155c34b",
            ),
            RemoteFile(
                "datamaps.json",
                f"{P5_SPORTS}/datamaps.json",
                "4a4d9785ab99a89a499f25023892a647a2280086041c9c9d7169c9dc2ee0b715",
            ),
        ),
    ),
    "yelp": DatasetSource(
        folder="yelp",
        files=(
            RemoteFile(
                "sequential_data.txt",
                f"{P5_YELP}/sequential_data.txt",
                "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
            ),
            RemoteFile(
                "datamaps.json",
                f"{P5_YELP}/datamaps.json",
                "52d07e709fc00e5e75fcf993af92db68a44b10f62a9c6b06b61732ae141367d1",
            ),
            RemoteFile(
                "closed_categories.json",
                f"{P5_YELP}/closed_categories.json",
                "ff8477e80b82e0ff70c09e4a59926a51013b66632bac4602b453c83f60410228",
            ),
            RemoteFile(
                "transrec/title_maps.npy",
                f"{TRANSREC}/yelp/rec_data/title_maps.npy",
                "da66d205ddcebc891982cad939e124b2af4756fe332682be5c65c1575a890a03",
            ),
            RemoteFile(
                "transrec/category_maps.npy",
                f"{TRANSREC}/yelp/rec_data/category_maps.npy",
                "1c91698dbe6722c1ecc711355448f340e0ab6209c14b7e50742d009f83844235",
            ),
            RemoteFile(
                "transrec/sequential_data.txt",
                f"{TRANSREC}/yelp/rec_data/sequential_data.txt",
                "2adaeb1741d11cdb0a96db80034a32571a6b61af167f236674a4f575597d740a",
            ),
        ),
        derived="items.jsonl",
        derive=derive_yelp_items,
        derived_sha256="27af98f546555a62bd409ff1e8a22549dc7581f99f741850abd041633ccb7a2e",
    ),
    "movielens_100k": DatasetSource(
        folder="movielens_100k",
        files=tuple(
            RemoteFile(name, ML_100K, sha, member=f"ml-100k/{name}")
            for name, sha in (
                # README (the usage license) is not checked: our reference copy
                # is GroupLens' current README, which may differ from the zip's.
                ("u.data", "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"),
                ("u.item", "a0be65d65782a76187b0e06d664be60d8691ffad0a25cbe698bf435588a00a35"),
                ("u.genre", "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb"),
                ("u.user", "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c"),
                ("u.info", "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b"),
                (
                    "u.occupation",
                    "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
                ),
            )
        ),
    ),
}


def download(name: str, data_dir: Path, timeout_s: float = 15, base_url: str | None = None) -> Path:
    """Put dataset `name` into `data_dir/<folder>/`; returns that folder.

    base_url replaces the scheme and host of every upstream URL (keeping the
    path), for a mirror or a test server.
    """
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(SOURCES)}")
    source = SOURCES[name]
    folder = Path(data_dir) / source.folder
    folder.mkdir(parents=True, exist_ok=True)
    fetch_files(
        source.files, folder, timeout_s, base_url, retry_hint=_retry_hint(name, source, data_dir)
    )
    if source.derive is not None:
        _derive(source, folder)
    return folder


def fetch_files(
    files: tuple[RemoteFile, ...] | list[RemoteFile],
    folder: Path,
    timeout_s: float = 15,
    base_url: str | None = None,
    retry_hint: str = "",
) -> list[Path]:
    """Make every file exist in `folder` with its sha256; download only what is not."""
    missing = [f for f in files if not _has_sha(folder / f.name, f.sha256)]
    by_url: dict[str, list[RemoteFile]] = {}
    for f in missing:
        by_url.setdefault(f.url, []).append(f)
    for url, wanted in by_url.items():
        try:
            archive = _fetch(_rebase(url, base_url), folder, timeout_s)
        except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
            still = [f for f in files if not _has_sha(folder / f.name, f.sha256)]
            raise DataError(_offline_message(url, base_url, e, still, folder, retry_hint)) from None
        try:
            _place(archive, wanted, folder, url)
        finally:
            archive.unlink(missing_ok=True)
    return [folder / f.name for f in files]


def _fetch(url: str, folder: Path, timeout_s: float) -> Path:
    """Stream `url` into a temp file inside `folder` (same disk, so rename is atomic)."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".download-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            shutil.copyfileobj(response, out, length=1 << 20)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _place(download_path: Path, wanted: list[RemoteFile], folder: Path, url: str) -> None:
    """Move the downloaded file (or the wanted zip members) into place, hash-checked."""
    if wanted[0].member is None:
        _check_and_rename(download_path, wanted[0], folder, url)
        return
    try:
        archive = zipfile.ZipFile(download_path)
    except zipfile.BadZipFile:
        raise DataError(f"{url} is not a zip archive", file=folder) from None
    with archive:
        for f in wanted:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".extract-", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out, archive.open(f.member) as member:
                    shutil.copyfileobj(member, out)
            except KeyError:
                Path(tmp).unlink(missing_ok=True)
                raise DataError(f"{url} has no member {f.member!r}", file=folder / f.name) from None
            _check_and_rename(Path(tmp), f, folder, f"{url} (member {f.member})")


def _check_and_rename(tmp: Path, f: RemoteFile, folder: Path, source: str) -> None:
    got = sha256_of(tmp)
    if got != f.sha256:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"sha256 mismatch for {source}: expected {f.sha256}, got {got}; the file was not kept",
            file=folder / f.name,
        )
    target = folder / f.name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(target)


def _derive(source: DatasetSource, folder: Path) -> None:
    target = folder / source.derived
    if _has_sha(target, source.derived_sha256):
        return
    source.derive(folder)
    got = sha256_of(target)
    if got != source.derived_sha256:
        # Inputs were hash-checked, so this is a derivation bug, not bad data;
        # move the file out of the loaders' way but keep it for inspection.
        rejected = target.with_name(target.name + ".rejected")
        target.replace(rejected)
        raise DataError(
            f"derived file differs from the reference build: expected sha256 "
            f"{source.derived_sha256}, got {got}; kept as {rejected.name} for inspection",
            file=target,
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _has_sha(path: Path, sha256: str | None) -> bool:
    return path.is_file() and sha256_of(path) == sha256


def _rebase(url: str, base_url: str | None) -> str:
    if base_url is None:
        return url
    return base_url.rstrip("/") + urlsplit(url).path


def _offline_message(url, base_url, error, still: list[RemoteFile], folder: Path, hint: str) -> str:
    if isinstance(error, urllib.error.HTTPError):
        reason = f"the server answered HTTP {error.code} for {_rebase(url, base_url)}"
    else:
        reason = (
            f"could not reach {_rebase(url, base_url)} "
            f"({getattr(error, 'reason', error)}): this machine seems offline"
        )
    lines = [f"{reason}. Put these files in {folder}:"]
    for f in still:
        origin = f"member {f.member} of {f.url}" if f.member else f.url
        lines.append(f"  {f.name}  <-  {origin}")
    return "\n".join(lines) + (f"\n{hint}" if hint else "")


def _retry_hint(name: str, source: DatasetSource, data_dir: Path) -> str:
    hint = f"then run `python -m sidrec.data.download {name} --data-dir {data_dir}` again"
    if source.derived:
        hint += f": it checks the files and builds {source.derived} from them"
    return hint + "."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sidrec.data.download", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("name", help=f"one of: {', '.join(SOURCES)}")
    parser.add_argument(
        "--data-dir", help=f"folder holding one folder per dataset (default: ${ENV_DATA_DIR})"
    )
    parser.add_argument(
        "--timeout", type=float, default=15, help="seconds per connection (default 15)"
    )
    parser.add_argument("--base-url", help="fetch from this mirror (same paths as upstream)")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or os.environ.get(ENV_DATA_DIR)
    try:
        if not data_dir:
            raise DataError(f"no data directory: pass --data-dir DIR or set {ENV_DATA_DIR}")
        folder = download(args.name, Path(data_dir).expanduser(), args.timeout, args.base_url)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.name}: ready in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
