"""jobs/ingest.py on a user's own catalog: what a user sees, good and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]


def write_catalog(folder: Path) -> Path:
    (folder / "items.csv").write_text(
        "sku,name,path\nA1,Red lipstick,Makeup > Lips\nB2,Face serum,Skin Care > Face\nC3,Shampoo,Hair Care\n"
    )
    rows = ["user,sku,ts"]
    for user, items in {"u1": ["A1", "B2", "C3", "A1"], "u2": ["C3", "B2", "A1"]}.items():
        rows += [f"{user},{item},{t}" for t, item in enumerate(items)]
    (folder / "events.csv").write_text("\n".join(rows) + "\n")
    spec = folder / "spec.yaml"
    spec.write_text(
        "name: shop\nitems_path: items.csv\ninteractions_path: events.csv\n"
        "item_id: sku\ntitle: name\ncategories: path\n"
        "user_id: user\ninteraction_item_id: sku\ntimestamp: ts\n"
    )
    return spec


def run_ingest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "jobs/ingest.py", "--no-mlflow", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )


def test_custom_catalog_ingests_and_reruns_as_a_noop(tmp_path):
    spec = write_catalog(tmp_path)
    root = tmp_path / "art"
    first = run_ingest("--custom", str(spec), "--artifact-root", str(root))
    assert first.returncode == 0, first.stderr
    assert "ingest written" in first.stdout
    items = pq.read_table(root / "catalog/items.parquet").to_pylist()
    assert [i["source_id"] for i in items] == ["A1", "B2", "C3"]
    assert items[0]["categories"] == ["Makeup", "Lips"]
    test = pq.read_table(root / "splits/test.parquet").to_pylist()
    assert test[0] == {"user_id": 0, "history": [0, 1, 2], "target": 0}
    again = run_ingest("--custom", str(spec), "--artifact-root", str(root))
    assert again.returncode == 0 and "ingest unchanged" in again.stdout


def test_bad_custom_input_names_the_file_and_field(tmp_path):
    spec = write_catalog(tmp_path)
    (tmp_path / "events.csv").write_text("user,sku,ts\nu1,A1,0\nu1,ZZ,1\nu1,B2,2\n")
    proc = run_ingest("--custom", str(spec), "--artifact-root", str(tmp_path / "art"))
    assert proc.returncode == 2
    assert "events.csv" in proc.stderr and "ZZ" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "art" / "catalog").exists()

    spec.write_text(spec.read_text() + "colour: red\n")
    proc = run_ingest("--custom", str(spec), "--artifact-root", str(tmp_path / "art"))
    assert proc.returncode == 2
    assert "spec.yaml" in proc.stderr and "colour" in proc.stderr


def test_later_jobs_use_what_the_artifact_root_holds(tmp_path, monkeypatch):
    """A custom catalog, once ingested, is the dataset: later stages read it with no
    raw-data folder and no registry entry; an empty root says how to ingest."""
    from sidrec.data import DataError, ensure_ingested

    monkeypatch.delenv("SIDREC_DATA_DIR", raising=False)
    spec = write_catalog(tmp_path)
    root = tmp_path / "art"
    assert run_ingest("--custom", str(spec), "--artifact-root", str(root)).returncode == 0
    held = ensure_ingested("shop", root, track=False)
    assert held.skipped and held.manifest["counts"]["items"] == 3
    empty = tmp_path / "empty"
    try:
        ensure_ingested("shop", empty, track=False)
    except DataError as err:
        assert "jobs/ingest.py --dataset shop --custom" in str(err) and str(empty) in str(err)
    else:
        raise AssertionError("an empty artifact root of an unknown dataset must fail")
    # and a job (evaluate) runs on it, from the artifact root alone
    out = subprocess.run(
        [sys.executable, "jobs/evaluate.py", "--dataset", "shop", "--model", "mostpop",
         "--artifact-root", str(root), "--no-mlflow"],
        cwd=REPO, capture_output=True, text=True,
        env={k: v for k, v in __import__("os").environ.items() if k != "SIDREC_DATA_DIR"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "mostpop on shop" in out.stdout
