"""The downloader against a real HTTP server on 127.0.0.1 (never the internet),
the source registry against the checked local copies, and the items.jsonl
derivations against the shipped files."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sidrec.data.datasets import DATASETS, DataError, load_dataset
from sidrec.data.download import (
    SOURCES,
    RemoteFile,
    derive_beauty_items,
    derive_yelp_items,
    download,
    fetch_files,
    main,
)

REPO = Path(__file__).resolve().parents[3]
TINY = b"1 1 2 3\n2 2 3\n"
TINY_SHA = hashlib.sha256(TINY).hexdigest()
UPSTREAM = "https://upstream.invalid/owner/repo/0123abcd"  # only its path is used


class Server:
    """A static file server over a folder, counting the requests it answers."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

        self.httpd = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
        )
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def put(self, url: str, data: bytes) -> None:
        """Serve `data` at the path of the upstream `url`."""
        path = self.root / urlsplit(url).path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "www")
    srv.root.mkdir()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def closed_port_url():
    # Bind then close: nothing listens there, so a connection is refused at once.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".part"))


# --- fetch_files ------------------------------------------------------------------


def test_fetch_verifies_and_skips_present_files(server, tmp_path):
    remote = RemoteFile("seq/tiny.txt", f"{UPSTREAM}/data/tiny.txt", TINY_SHA)
    server.put(remote.url, TINY)
    folder = tmp_path / "out"
    folder.mkdir()
    paths = fetch_files([remote], folder, timeout_s=5, base_url=server.url)
    assert paths == [folder / "seq" / "tiny.txt"]
    assert paths[0].read_bytes() == TINY
    assert server.requests == ["/owner/repo/0123abcd/data/tiny.txt"]
    fetch_files([remote], folder, timeout_s=5, base_url=server.url)
    assert len(server.requests) == 1  # right hash already there: no request
    assert leftovers(folder) == []


def test_fetch_replaces_a_corrupt_file(server, tmp_path):
    remote = RemoteFile("tiny.txt", f"{UPSTREAM}/tiny.txt", TINY_SHA)
    server.put(remote.url, TINY)
    (tmp_path / "tiny.txt").write_bytes(b"truncated")
    fetch_files([remote], tmp_path, timeout_s=5, base_url=server.url)
    assert (tmp_path / "tiny.txt").read_bytes() == TINY


def test_sha_mismatch_keeps_nothing(server, tmp_path):
    remote = RemoteFile("tiny.txt", f"{UPSTREAM}/tiny.txt", "0" * 64)
    server.put(remote.url, TINY)
    with pytest.raises(DataError) as err:
        fetch_files([remote], tmp_path, timeout_s=5, base_url=server.url)
    message = str(err.value)
    assert "sha256 mismatch" in message and "0" * 64 in message and TINY_SHA in message
    assert err.value.file == str(tmp_path / "tiny.txt")
    assert not (tmp_path / "tiny.txt").exists()
    assert leftovers(tmp_path) == []


def test_offline_lists_files_and_folder(closed_port_url, tmp_path):
    files = [
        RemoteFile("a.txt", f"{UPSTREAM}/a.txt", TINY_SHA),
        RemoteFile("sub/b.txt", f"{UPSTREAM}/b.txt", TINY_SHA),
    ]
    with pytest.raises(DataError) as err:
        fetch_files(files, tmp_path, timeout_s=5, base_url=closed_port_url)
    message = str(err.value)
    assert "seems offline" in message
    assert f"Put these files in {tmp_path}:" in message
    assert f"a.txt  <-  {UPSTREAM}/a.txt" in message
    assert f"sub/b.txt  <-  {UPSTREAM}/b.txt" in message
    assert leftovers(tmp_path) == []


def test_http_error_is_reported(server, tmp_path):
    remote = RemoteFile("gone.txt", f"{UPSTREAM}/gone.txt", TINY_SHA)
    with pytest.raises(DataError, match="HTTP 404") as err:
        fetch_files([remote], tmp_path, timeout_s=5, base_url=server.url)
    assert "gone.txt  <-  " in str(err.value)


def test_zip_members_are_checked_not_the_zip(server, tmp_path):
    url = "https://files.invalid/sets/tiny.zip"
    buffer = tmp_path / "tiny.zip"
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tiny/u.data", TINY)
        archive.writestr("tiny/other", b"not wanted")
    server.put(url, buffer.read_bytes())
    folder = tmp_path / "out"
    folder.mkdir()
    fetch_files([RemoteFile("u.data", url, TINY_SHA, member="tiny/u.data")], folder, 5, server.url)
    assert sorted(p.name for p in folder.iterdir()) == ["u.data"]
    with pytest.raises(DataError, match="sha256 mismatch"):
        fetch_files([RemoteFile("x", url, TINY_SHA, member="tiny/other")], folder, 5, server.url)
    assert sorted(p.name for p in folder.iterdir()) == ["u.data"]


# --- the registry ------------------------------------------------------------------


def test_sources_match_datasets_and_pin_commits():
    assert set(SOURCES) == set(DATASETS)
    for name, source in SOURCES.items():
        assert source.folder == DATASETS[name].folder
        for f in source.files:
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256)
            if f.url.startswith("https://raw.githubusercontent.com/"):
                commit = f.url.split("/")[5]
                assert re.fullmatch(r"[0-9a-f]{40}", commit), f.url
            else:
                assert f.url == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
                assert f.member == f"ml-100k/{f.name}"


def test_sources_hashes_match_local_copies(data_dir):
    for source in SOURCES.values():
        for f in source.files:
            local = data_dir / source.folder / f.name
            assert hashlib.sha256(local.read_bytes()).hexdigest() == f.sha256, local
        if source.derived:
            local = data_dir / source.folder / source.derived
            assert hashlib.sha256(local.read_bytes()).hexdigest() == source.derived_sha256


# --- derived items.jsonl -----------------------------------------------------------


def copy_inputs(name: str, data_dir: Path, dest: Path) -> Path:
    source = SOURCES[name]
    for f in source.files:
        (dest / f.name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / source.folder / f.name, dest / f.name)
    return dest


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(
    ("name", "derive"), [("beauty", derive_beauty_items), ("yelp", derive_yelp_items)]
)
def test_derived_items_equal_shipped(data_dir, tmp_path, name, derive):
    folder = copy_inputs(name, data_dir, tmp_path)
    written = derive(folder)
    assert written == folder / "items.jsonl"
    assert read_jsonl(written) == read_jsonl(data_dir / SOURCES[name].folder / "items.jsonl")


def test_misaligned_sequences_are_refused(data_dir, tmp_path):
    folder = copy_inputs("beauty", data_dir, tmp_path)
    lines = (folder / "transrec" / "sequential_data.txt").read_text().splitlines(keepends=True)
    lines[2] = lines[2].rstrip("\n") + " 7\n"  # one item too many for user 3
    (folder / "transrec" / "sequential_data.txt").write_text("".join(lines))
    with pytest.raises(DataError, match="user or length differs") as err:
        derive_beauty_items(folder)
    assert err.value.line == 3


# --- end to end through a mirror ----------------------------------------------------


def mirror(server: Server, name: str, data_dir: Path, tmp_path: Path) -> None:
    """Serve the checked local copies at their upstream paths (a zip for MovieLens)."""
    source = SOURCES[name]
    zips: dict[str, list] = {}
    for f in source.files:
        local = data_dir / source.folder / f.name
        if f.member:
            zips.setdefault(f.url, []).append((f.member, local))
        else:
            server.put(f.url, local.read_bytes())
    for url, members in zips.items():
        archive_path = tmp_path / "mirror.zip"
        with zipfile.ZipFile(archive_path, "w") as archive:
            for member, local in members:
                archive.write(local, member)
        server.put(url, archive_path.read_bytes())


def test_download_beauty_then_load(server, data_dir, tmp_path):
    mirror(server, "beauty", data_dir, tmp_path)
    out = tmp_path / "data"
    folder = download("beauty", out, timeout_s=5, base_url=server.url)
    assert folder == out / "amazon_beauty"
    assert (folder / "items.jsonl").read_bytes() == (
        data_dir / "amazon_beauty" / "items.jsonl"
    ).read_bytes()
    assert load_dataset("beauty", out).items.num_rows == 12_101
    requests = len(server.requests)
    download("beauty", out, timeout_s=5, base_url=server.url)
    assert len(server.requests) == requests  # everything present and checked


def test_cli_movielens(server, data_dir, tmp_path, capsys):
    mirror(server, "movielens_100k", data_dir, tmp_path)
    out = tmp_path / "data"
    assert main(["movielens_100k", "--data-dir", str(out), "--base-url", server.url]) == 0
    assert server.requests == ["/datasets/movielens/ml-100k.zip"]  # one zip for all members
    assert load_dataset("movielens_100k", out).interactions.num_rows == 100_000
    assert "ready in" in capsys.readouterr().out


def test_cli_offline_exits_2(closed_port_url, tmp_path, capsys):
    code = main(
        ["yelp", "--data-dir", str(tmp_path), "--timeout", "5", "--base-url", closed_port_url]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "seems offline" in err and str(tmp_path / "yelp") in err
    assert (
        "transrec/title_maps.npy  <-  https://raw.githubusercontent.com/Linxyhaha/TransRec/" in err
    )
    assert "builds items.jsonl" in err


def test_module_entry_point_unknown_name(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sidrec.data.download", "nope", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO / "platform"), "PATH": ""},
    )
    assert result.returncode == 2
    assert (
        "unknown dataset 'nope'; known datasets: beauty, sports, yelp, movielens_100k"
        in result.stderr
    )
