"""Artifact plumbing shared by every stage: hashes, manifests, all-or-nothing writes.

Each stage writes into a staging folder beside its destination and swaps it in
only when everything is written, so a crash or a bad input never leaves a
half-written artifact where the next stage would read it. The manifest is
written last; a stage whose manifest matches its inputs and config is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform as _stdlib_platform
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "MANIFEST_NAME",
    "sha256_file",
    "sha256_json",
    "file_record",
    "staging_dir",
    "publish_dirs",
    "atomic_path",
    "write_text_atomic",
    "write_json_atomic",
    "read_manifest",
    "published_manifest",
    "library_versions",
    "utc_now",
]

MANIFEST_NAME = "manifest.json"
_VERSIONED = ("sidrec", "numpy", "pyarrow", "pandas", "torch", "ray", "mlflow", "scikit-learn")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """Hash of a JSON-able value with sorted keys, so equal configs hash equal."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_record(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


@contextmanager
def staging_dir(parent: str | os.PathLike, stage: str) -> Iterator[Path]:
    """A fresh folder inside `parent` for one stage's outputs; removed on error.

    It lives on the same filesystem as the destination so that publishing is a
    rename, not a copy.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / f".staging-{stage}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def publish_dirs(staged: Path, parent: Path, names: list[str]) -> None:
    """Move `staged/<name>` to `parent/<name>` for each name, replacing old ones.

    The old folder is renamed aside first and deleted only once the new one
    is in place, so at no point is a destination missing *and* unrecoverable.
    """
    trash = parent / f".trash-{uuid.uuid4().hex[:8]}"
    trash.mkdir()
    try:
        for name in names:
            dest = parent / name
            if dest.exists():
                os.replace(dest, trash / name)
            os.replace(staged / name, dest)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """The one atomic write: a fresh temporary path beside `path` for any writer
    (`open`, `pq.write_table`, `fig.savefig`), renamed over `path` when the block
    ends cleanly and deleted when it raises, so readers see the old file or the
    new one, never half of one.

        with atomic_path(dest) as tmp:
            pq.write_table(table, tmp)

    The temporary file sits in the same folder (one filesystem: the rename is
    atomic) and keeps the suffix (savefig picks the format from it). It is created
    by the writer, so it gets the umask's permissions, like any other output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def read_manifest(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest in `folder`, or None when absent or unreadable (= redo the stage)."""
    path = Path(folder) / MANIFEST_NAME
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "os": _stdlib_platform.platform()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def published_manifest(output: Path, manifest: Path, fingerprint: str) -> dict[str, Any] | None:
    """The manifest of a file-and-manifest artifact when it is complete and was built
    from `fingerprint` (the file exists and still has the sha256 the manifest
    recorded); None when the stage must run (again)."""
    try:
        record = json.loads(Path(manifest).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if record.get("fingerprint") != fingerprint or not Path(output).is_file():
        return None
    if sha256_file(output) != record.get("output", {}).get("sha256"):
        return None
    return record
