"""train.data.download against a local HTTP server (127.0.0.1 only) serving the real PhysioNet files.

The server is a small Range-aware handler written here (SimpleHTTPRequestHandler ignores Range);
it records every request and Range header so a test can prove that a resume used Range.
"""
from __future__ import annotations

import contextlib
import re
import shutil
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

import pytest

from edge_runtime.errors import ChecksumError, ConfigError, DownloadError
from conftest import shared_data_dir
from train.data.download import (
    DATASETS,
    download,
    include_patterns,
    parse_sha256sums,
    select_files,
)

PTBXL_FILES = [
    "scp_statements.csv",
    "records100/00000/00001_lr.dat",
    "records100/00000/00001_lr.hea",
    "records100/00000/00002_lr.dat",
    "records100/00000/00002_lr.hea",
]
PTBXL_INCLUDE = ["*.csv", "records100/00000/00001_lr.*", "records100/00000/00002_lr.*"]
FAST = {"workers": 3, "retries": 2, "backoff": 0.01, "timeout": 10.0}


class _Server(ThreadingHTTPServer):
    """Serves `root`; `ignore_range` answers 200 to Range requests; `fail` maps a URL path to a
    number of 503 answers to give before serving it; `cut` maps a URL path to a number of
    answers that announce the full length but stop after half the body."""

    daemon_threads = True

    def __init__(self, root: Path, ignore_range: bool = False, fail: dict[str, int] | None = None,
                 cut: dict[str, int] | None = None):
        super().__init__(("127.0.0.1", 0), _RangeHandler)
        self.root = root
        self.ignore_range = ignore_range
        self.fail = dict(fail or {})
        self.cut = dict(cut or {})
        self.lock = threading.Lock()
        self.log: list[tuple[str, str | None, int]] = []  # (path, Range header, status)

    def record(self, path: str, rng: str | None, status: int) -> None:
        with self.lock:
            self.log.append((path, rng, status))

    def ranges(self) -> list[tuple[str, str]]:
        return [(p, r) for p, r, _ in self.log if r is not None]

    def take(self, table: dict[str, int], path: str) -> bool:
        """Use up one of the faults `table` holds for `path`; True if there was one."""
        with self.lock:
            left = table.get(path, 0)
            if left:
                table[path] = left - 1
            return left > 0


class _RangeHandler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        rng = self.headers.get("Range")
        if self.server.take(self.server.fail, path):
            return self._reply(path, rng, HTTPStatus.SERVICE_UNAVAILABLE, b"busy")
        file = (self.server.root / path.lstrip("/")).resolve()
        if not file.is_file() or not file.is_relative_to(self.server.root.resolve()):
            return self._reply(path, rng, HTTPStatus.NOT_FOUND, b"not found")
        data = file.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if match is None or self.server.ignore_range:
            return self._reply(path, rng, HTTPStatus.OK, data)
        start = int(match.group(1))
        if start >= len(data):
            return self._reply(path, rng, HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"",
                               {"Content-Range": f"bytes */{len(data)}"})
        return self._reply(path, rng, HTTPStatus.PARTIAL_CONTENT, data[start:],
                           {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})

    def _reply(self, path: str, rng: str | None, status: int, body: bytes,
               headers: dict[str, str] | None = None) -> None:
        self.server.record(path, rng, int(status))
        self.send_response(status)
        for key, value in {**(headers or {}), "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.server.take(self.server.cut, path):
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)


@contextlib.contextmanager
def serve(root: Path, **kw: object) -> Iterator[tuple[str, _Server]]:
    server = _Server(root, **kw)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _data(sub: str) -> Path:
    root = shared_data_dir() / sub
    if not (root / "SHA256SUMS.txt").is_file():
        pytest.skip(f"real data absent: {root / 'SHA256SUMS.txt'} not found (set ECG_EDGE_SHARED_DATA)")
    return root


@pytest.fixture(scope="module")
def ptbxl() -> Path:
    return _data("ptbxl")


@pytest.fixture(scope="module")
def mitdb() -> Path:
    return _data("mitdb")


def _mirror(src: Path, dst: Path, files: list[str]) -> Path:
    """Copy SHA256SUMS.txt and `files` of `src` into `dst` (a server root the test may alter)."""
    for rel in ["SHA256SUMS.txt", *files]:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dst / rel)
    return dst


def test_ptbxl_download_skip_and_resume(ptbxl: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    seen: list[tuple[str, int, int]] = []
    with serve(ptbxl) as (url, server):
        report = download("ptbxl", dest, base_url=url, include=PTBXL_INCLUDE,
                          progress=lambda *a: seen.append(a), **FAST)
        assert report.downloaded == tuple(sorted(PTBXL_FILES))
        assert report.skipped == () and report.resumed == ()
        assert report.bytes_received == sum((ptbxl / f).stat().st_size for f in PTBXL_FILES)
        for rel in PTBXL_FILES:
            assert (dest / rel).read_bytes() == (ptbxl / rel).read_bytes(), rel
        # The published list names only these; the trimmed ptbxl_database.csv is not in it.
        assert not (dest / "ptbxl_database.csv").exists()
        assert not list(dest.rglob("*.part"))
        assert {s[0] for s in seen} == set(PTBXL_FILES)
        assert server.ranges() == []

        again = download("ptbxl", dest, base_url=url, include=PTBXL_INCLUDE, **FAST)
        assert again.skipped == tuple(sorted(PTBXL_FILES))
        assert again.downloaded == () and again.bytes_received == 0

        rel = "records100/00000/00001_lr.dat"
        original = (ptbxl / rel).read_bytes()
        half = len(original) // 2
        (dest / rel).unlink()
        (dest / (rel + ".part")).write_bytes(original[:half])
        server.log.clear()
        resumed = download("ptbxl", dest, base_url=url, include=PTBXL_INCLUDE, **FAST)
        assert resumed.resumed == (rel,) and resumed.downloaded == (rel,)
        assert resumed.bytes_received == len(original) - half
        assert server.ranges() == [("/" + rel, f"bytes={half}-")]
        assert [s for _, _, s in server.log if s == 206] == [206]
        assert (dest / rel).read_bytes() == original
        assert not (dest / (rel + ".part")).exists()


def test_server_ignoring_range_restarts_from_zero(ptbxl: Path, tmp_path: Path) -> None:
    rel = "records100/00000/00001_lr.dat"
    original = (ptbxl / rel).read_bytes()
    part = tmp_path / (rel + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\xff" * (len(original) // 2))  # a wrong partial that must be thrown away
    with serve(ptbxl, ignore_range=True) as (url, server):
        report = download("ptbxl", tmp_path, base_url=url, include=[rel], **FAST)
        assert server.ranges() == [("/" + rel, f"bytes={len(original) // 2}-")]
    assert report.downloaded == (rel,) and report.resumed == ()
    assert report.bytes_received == len(original)
    assert (tmp_path / rel).read_bytes() == original


def test_part_longer_than_file_gets_416_and_restarts(ptbxl: Path, tmp_path: Path) -> None:
    rel = "records100/00000/00001_lr.hea"
    original = (ptbxl / rel).read_bytes()
    part = tmp_path / (rel + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * (len(original) + 10))
    with serve(ptbxl) as (url, server):
        report = download("ptbxl", tmp_path, base_url=url, include=[rel], **FAST)
        assert [s for p, _, s in server.log if p == "/" + rel] == [416, 200]
    assert report.downloaded == (rel,) and report.resumed == ()
    assert (tmp_path / rel).read_bytes() == original


def test_checksum_mismatch_names_file_and_leaves_nothing(ptbxl: Path, tmp_path: Path) -> None:
    rel = "records100/00000/00001_lr.dat"
    root = _mirror(ptbxl, tmp_path / "srv", [rel])
    data = bytearray((root / rel).read_bytes())
    data[100] ^= 0x01
    (root / rel).write_bytes(bytes(data))
    expected = parse_sha256sums((ptbxl / "SHA256SUMS.txt").read_text(), "sums")[rel]
    dest = tmp_path / "out"
    with serve(root) as (url, _):
        with pytest.raises(ChecksumError) as info:
            download("ptbxl", dest, base_url=url, include=[rel], **FAST)
    message = str(info.value)
    assert rel in message and expected in message and "\n" not in message
    assert not (dest / rel).exists()
    assert not (dest / (rel + ".part")).exists()


def test_http_404_names_the_url(ptbxl: Path, tmp_path: Path) -> None:
    rel = "records100/00000/00002_lr.dat"
    root = _mirror(ptbxl, tmp_path / "srv", [])  # listed but absent on the server
    with serve(root) as (url, server):
        with pytest.raises(DownloadError, match="404") as info:
            download("ptbxl", tmp_path / "out", base_url=url, include=[rel], **FAST)
        assert len([p for p, _, _ in server.log if p == "/" + rel]) == 1  # 404 is not retried
    assert url + rel in str(info.value)
    assert not isinstance(info.value, ChecksumError)


def test_missing_sums_file_names_its_url(tmp_path: Path) -> None:
    with serve(tmp_path) as (url, _):
        with pytest.raises(DownloadError, match=re.escape(url + "SHA256SUMS.txt")):
            download("mitdb", tmp_path / "out", base_url=url, **FAST)


def test_transient_503_is_retried_then_gives_up(ptbxl: Path, tmp_path: Path) -> None:
    rel = "records100/00000/00001_lr.hea"
    with serve(ptbxl, fail={"/" + rel: 2}) as (url, _):
        report = download("ptbxl", tmp_path / "a", base_url=url, include=[rel], **FAST)
    assert report.downloaded == (rel,)
    assert (tmp_path / "a" / rel).read_bytes() == (ptbxl / rel).read_bytes()
    with serve(ptbxl, fail={"/" + rel: 10}) as (url, server):
        with pytest.raises(DownloadError, match="failed after 3 attempts"):
            download("ptbxl", tmp_path / "b", base_url=url, include=[rel], **FAST)
        assert len(server.log) == 1 + 3  # the list, then 1 try + 2 retries


def test_short_body_is_retried_by_resuming(ptbxl: Path, tmp_path: Path) -> None:
    rel = "records100/00000/00002_lr.dat"
    original = (ptbxl / rel).read_bytes()
    with serve(ptbxl, cut={"/" + rel: 1}) as (url, server):
        report = download("ptbxl", tmp_path, base_url=url, include=[rel], **FAST)
        assert server.ranges() == [("/" + rel, f"bytes={len(original) // 2}-")]
    assert report.resumed == (rel,) and report.bytes_received == len(original)
    assert (tmp_path / rel).read_bytes() == original


def test_mitdb_fetches_only_listed_files(mitdb: Path, tmp_path: Path) -> None:
    with serve(mitdb) as (url, _):
        report = download("mitdb", tmp_path, base_url=url, include=["100.*"], **FAST)
    assert report.downloaded == ("100.atr", "100.dat")
    for rel in report.downloaded:
        assert (tmp_path / rel).read_bytes() == (mitdb / rel).read_bytes()
    assert not (tmp_path / "100.hea").exists()  # on the server, but not in its SHA256SUMS.txt


@pytest.mark.parametrize("bad", ["../evil.dat", "/etc/evil.dat", "a/../../evil.dat"])
def test_path_traversal_in_sums_is_refused(tmp_path: Path, bad: str) -> None:
    root = tmp_path / "srv"
    root.mkdir()
    (root / "SHA256SUMS.txt").write_text(f"{'0' * 64} {bad}\n")
    with serve(root) as (url, server):
        with pytest.raises(DownloadError, match="unsafe path"):
            download("mitdb", tmp_path / "out", base_url=url, **FAST)
        assert len(server.log) == 1  # nothing but the list was requested
    assert not (tmp_path / "evil.dat").exists()


def test_include_matching_nothing_is_a_config_error(mitdb: Path, tmp_path: Path) -> None:
    with serve(mitdb) as (url, _):
        with pytest.raises(ConfigError, match="match none"):
            download("mitdb", tmp_path, base_url=url, include=["nothing/*"], **FAST)


def test_unknown_dataset_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        download("ptb", tmp_path)
    for name in DATASETS:
        assert name in str(info.value)
    with pytest.raises(ConfigError, match="records500"):
        include_patterns("ptbxl", optional=["records1000"])


def test_default_selection_on_published_ptbxl_list(ptbxl: Path) -> None:
    paths = list(parse_sha256sums((ptbxl / "SHA256SUMS.txt").read_text(), "sums"))
    default = select_files(paths, include_patterns("ptbxl"))
    assert "scp_statements.csv" in default and "records100/00000/00001_lr.dat" in default
    assert not [p for p in default if p.startswith("records500/")]
    full = select_files(paths, include_patterns("ptbxl", optional=["records500"]))
    assert "records500/00000/00001_hr.dat" in full and len(full) == len(paths)


def test_glob_rules() -> None:
    paths = ["training/A00/A00001.mat", "training/A00/A00001.hea", "training/REFERENCE.csv",
             "training2017.zip", "validation/A00001.mat", "REFERENCE-v3.csv"]
    assert select_files(paths, include_patterns("cinc2017")) == [
        "REFERENCE-v3.csv", "training/A00/A00001.hea", "training/A00/A00001.mat",
        "training/REFERENCE.csv"]
    assert select_files(paths, ["*.csv"]) == ["REFERENCE-v3.csv"]  # * stays in one segment
    assert select_files(paths, ["**/*.csv"]) == ["REFERENCE-v3.csv", "training/REFERENCE.csv"]
    assert select_files(paths, ["validation"]) == ["validation/A00001.mat"]  # a directory
    assert select_files(paths, ["*"]) == sorted(paths)


def test_sums_parser_accepts_sha256sum_variants_and_rejects_junk() -> None:
    h = "ab" * 32
    assert parse_sha256sums(f"{h} a.dat\n{h.upper()}  b/c.dat\n\n{h} *d.dat\n", "s") == {
        "a.dat": h, "b/c.dat": h, "d.dat": h}
    with pytest.raises(DownloadError, match="line 1"):
        parse_sha256sums("nothex a.dat\n", "s")
    with pytest.raises(DownloadError, match="twice"):
        parse_sha256sums(f"{h} a.dat\n{h} a.dat\n", "s")
