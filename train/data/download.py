"""Resumable, verified downloads of PhysioNet datasets (standard library only: urllib, hashlib).

Every published PhysioNet project has a `SHA256SUMS.txt` at the root of its files
(`https://physionet.org/files/<slug>/<version>/`), one `<sha256> <relative path>` line per file.
`download` fetches that list, keeps the entries matching the include patterns, skips files that
are already present with the right hash, and fetches the rest into `DEST/<relative path>` through
a `<name>.part` file. An existing `.part` is resumed with `Range: bytes=N-`; a server answering
200 (Range ignored) or 416 makes it start again from byte 0. The SHA-256 is checked before the
`.part` is renamed into place, so a file at its final path is always a verified one. The
fetched list is kept as `DEST/SHA256SUMS.txt`, so `sha256sum -c --ignore-missing` works there.

What each dataset downloads by default (`DATASETS[name].include`):
- `ptbxl` (PTB-XL 1.0.3): `ptbxl_database.csv`, `scp_statements.csv` (`*.csv` at the root),
  `RECORDS`, `LICENSE.txt` and `records100/` (100 Hz, 21,799 records in `records100/NNNNN/
  NNNNN_lr.{hea,dat}`). `records500/` (500 Hz, ~1.7 GB) only with the optional group
  `records500` (`include_patterns("ptbxl", optional=["records500"])`).
- `mitdb` (MIT-BIH Arrhythmia 1.0.0): every file the list names (`*`, which with the
  directory rule below takes the subfolders too).
- `cinc2017` (PhysioNet/CinC Challenge 2017 1.0.0): the training set as PhysioNet lays it out,
  `training/A00/A00001.{hea,mat}` ... `training/A08/A08528.{hea,mat}`, plus
  `training/REFERENCE.csv`, `training/RECORDS` and the revised labels `REFERENCE-v3.csv` at the
  root. Not the zips (`training2017.zip`, `sample2017.zip`), `validation/` (optional group
  `validation`) or the entrants' `sources/`.

How the layouts were checked (no access to physionet.org from where this was written): PTB-XL
and MIT-BIH against PhysioNet's own `SHA256SUMS.txt` lines for the files kept in
`../shared/data` (`records100/00000/00001_lr.dat`, `scp_statements.csv`, `100.atr`, `100.dat`),
and PTB-XL's tree against its published README. The CinC 2017 layout (`training/A0k/` folders,
`training/REFERENCE.csv`, `REFERENCE-v3.csv` at the root) comes from code that downloads it
from `physionet.org/files/challenge-2017/1.0.0/`; its `SHA256SUMS.txt` itself could not be
read, so that it lists the `training/` records is assumed from PhysioNet's practice of listing
every file. If a list matches none of the patterns, `download` says so (ConfigError) instead
of succeeding with nothing.

Include patterns are globs over the `/`-separated relative paths: `*` and `?` stay within one
path segment, `**` crosses segments, and a pattern matching a directory (`records100`,
`training/A0?`) takes everything below it.
"""
from __future__ import annotations

import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from edge_runtime.errors import ChecksumError, ConfigError, DownloadError
from edge_runtime.provenance import sha256_of

Progress = Callable[[str, int, int], None]
"""`progress(relative_path, bytes_done, bytes_total)`; `bytes_total` is -1 when unknown."""

SUMS_NAME = "SHA256SUMS.txt"
_CHUNK = 1 << 20
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_USER_AGENT = "ecg-edge-download/0.1 (python-urllib)"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class RemoteDataset:
    """A published PhysioNet dataset: where it lives and which of its files to fetch.

    `optional` maps a group name (e.g. `records500`) to extra include patterns that are
    left out by default because of their size or use.
    """

    name: str
    title: str
    base_url: str
    include: tuple[str, ...]
    optional: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


DATASETS: dict[str, RemoteDataset] = {
    "ptbxl": RemoteDataset(
        "ptbxl", "PTB-XL 1.0.3", "https://physionet.org/files/ptb-xl/1.0.3/",
        include=("*.csv", "RECORDS", "LICENSE.txt", "records100"),
        optional={"records500": ("records500",)},
    ),
    "cinc2017": RemoteDataset(
        "cinc2017", "PhysioNet/CinC Challenge 2017 1.0.0",
        "https://physionet.org/files/challenge-2017/1.0.0/",
        include=("training/REFERENCE.csv", "training/RECORDS", "training/A*/*.hea",
                 "training/A*/*.mat", "REFERENCE-v3.csv"),
        optional={"validation": ("validation",)},
    ),
    "mitdb": RemoteDataset(
        "mitdb", "MIT-BIH Arrhythmia Database 1.0.0", "https://physionet.org/files/mitdb/1.0.0/",
        include=("*",),
    ),
}


@dataclass(frozen=True)
class DownloadReport:
    """What one `download` call did; paths are relative to `dest`, sorted.

    `downloaded` holds every file fetched in this run, including the `resumed` ones (those that
    continued a `.part` with a Range request); `skipped` were already present with the right
    hash. `bytes_received` counts bytes that came over the network in this run.
    """

    dataset: str
    dest: Path
    downloaded: tuple[str, ...]
    skipped: tuple[str, ...]
    resumed: tuple[str, ...]
    bytes_received: int


@dataclass
class _Job:
    """One file to fetch, with the settings every worker shares; `received` grows as bytes arrive."""

    rel: str
    url: str
    sha256: str
    target: Path
    retries: int
    backoff: float
    timeout: float
    progress: Progress | None
    received: int = 0
    resumed: bool = False


def get_dataset(name: str) -> RemoteDataset:
    """The table entry for `name`; ConfigError listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise ConfigError(f"dataset: unknown dataset {name!r}; expected one of {known}") from None


def include_patterns(name: str, optional: Sequence[str] = ()) -> tuple[str, ...]:
    """The default include patterns of dataset `name` plus those of the named optional groups."""
    ds = get_dataset(name)
    patterns = list(ds.include)
    for group in optional:
        if group not in ds.optional:
            known = ", ".join(sorted(ds.optional)) or "none"
            raise ConfigError(f"{name}: unknown optional group {group!r}; expected one of {known}")
        patterns.extend(ds.optional[group])
    return tuple(patterns)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            out.append({"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i])))
            i += 1
    return re.compile("".join(out) + r"\Z")


def select_files(paths: Sequence[str], include: Sequence[str]) -> list[str]:
    """The sorted paths that a pattern matches, or that lie under a directory a pattern matches."""
    regexes = [_glob_regex(p.strip("/")) for p in include]
    chosen = []
    for path in paths:
        parts = path.split("/")
        prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
        if any(rx.match(prefix) for rx in regexes for prefix in prefixes):
            chosen.append(path)
    return sorted(chosen)


def _check_relative(path: str, source: str, lineno: int) -> None:
    parts = path.split("/")
    if (path.startswith("/") or "\\" in path or re.match(r"[A-Za-z]:", path)
            or any(p in ("", ".", "..") for p in parts)):
        raise DownloadError(
            f"{source} line {lineno}: unsafe path {path!r}; expected a relative path without '..'")


def parse_sha256sums(text: str, source: str) -> dict[str, str]:
    """Map relative path -> lower-case SHA-256 from a `sha256sum`-style list.

    Accepts `<hash> <path>`, `<hash>  <path>` and `<hash> *<path>` lines; blank lines are ignored.
    Absolute paths, `..`, backslashes and duplicate paths raise DownloadError naming `source`.
    """
    entries: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, rest = line.partition(" ")
        path = rest.lstrip(" ").removeprefix("*").rstrip("\r")
        if not _HEX64.fullmatch(digest) or not path:
            raise DownloadError(
                f"{source} line {lineno}: expected '<64 hex digits> <relative path>', got {line!r}")
        _check_relative(path, source, lineno)
        if path in entries:
            raise DownloadError(f"{source} line {lineno}: {path!r} listed twice")
        entries[path] = digest.lower()
    return entries


def _file_url(base_url: str, rel: str) -> str:
    return base_url + urllib.parse.quote(rel)


def _urlopen(url: str, timeout: float, offset: int = 0) -> http.client.HTTPResponse:
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in _TRANSIENT_STATUS
    return isinstance(exc, (urllib.error.URLError, http.client.HTTPException,
                            ConnectionError, TimeoutError))


def _retrying(url: str, retries: int, backoff: float, action: Callable[[], object]) -> object:
    """Run `action`, retrying transient network errors `retries` times with exponential backoff."""
    for attempt in range(retries + 1):
        try:
            return action()
        except urllib.error.HTTPError as exc:
            exc.close()  # the error carries the open response; free its socket now
            if not _is_transient(exc):
                raise DownloadError(
                    f"{url}: HTTP {exc.code} {exc.reason}; expected 200 or 206") from None
            last: BaseException = exc
        except Exception as exc:
            if not _is_transient(exc):
                raise
            last = exc
        if attempt < retries:
            time.sleep(backoff * 2**attempt)
    raise DownloadError(f"{url}: failed after {retries + 1} attempts: {last}") from last


def _content_range_start(resp: http.client.HTTPResponse) -> int | None:
    match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _open_resumable(job: _Job, part: Path) -> tuple[http.client.HTTPResponse, int]:
    """Open `job.url`, continuing `part` where that works; returns the response and its offset.

    206 starting at the `.part` size: resume. 200: the server ignored Range, start from byte 0.
    416 or a 206 from another offset: delete the `.part` and ask for the whole file.
    """
    offset = part.stat().st_size if part.is_file() else 0
    if offset:
        try:
            resp = _urlopen(job.url, job.timeout, offset)
        except urllib.error.HTTPError as exc:
            if exc.code != 416:
                raise
            exc.close()
        else:
            if resp.status == 206 and _content_range_start(resp) == offset:
                return resp, offset
            if resp.status == 200:
                return resp, 0
            resp.close()
        part.unlink(missing_ok=True)
    resp = _urlopen(job.url, job.timeout)
    if resp.status != 200:
        resp.close()
        raise DownloadError(f"{job.url}: HTTP {resp.status} to a plain GET; expected 200")
    return resp, 0


def _transfer(job: _Job, part: Path) -> None:
    """One attempt: stream the (rest of the) file into `part`; IncompleteRead if the body is short."""
    resp, offset = _open_resumable(job, part)
    with resp:
        length = resp.headers.get("Content-Length", "")
        expected = int(length) if length.isdigit() else None
        total = offset + expected if expected is not None else -1
        job.resumed = job.resumed or offset > 0
        got = 0
        with part.open("ab" if offset else "wb") as fh:
            while chunk := resp.read(_CHUNK):
                fh.write(chunk)
                got += len(chunk)
                job.received += len(chunk)
                if job.progress:
                    job.progress(job.rel, offset + got, total)
    if expected is not None and got < expected:
        raise http.client.IncompleteRead(b"", expected - got)


def _fetch_file(job: _Job) -> str:
    """Make `job.target` a verified copy; returns 'skipped' or 'downloaded'."""
    if job.target.is_file() and sha256_of(job.target) == job.sha256:
        if job.progress:
            size = job.target.stat().st_size
            job.progress(job.rel, size, size)
        return "skipped"
    job.target.parent.mkdir(parents=True, exist_ok=True)
    part = job.target.with_name(job.target.name + ".part")
    _retrying(job.url, job.retries, job.backoff, lambda: _transfer(job, part))
    actual = sha256_of(part)
    if actual != job.sha256:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{job.rel}: SHA-256 of {job.url} is {actual}; expected {job.sha256} (download deleted)")
    os.replace(part, job.target)
    return "downloaded"


def _run_jobs(jobs: list[_Job], workers: int) -> list[str]:
    """Run the jobs on a thread pool; the first failure cancels the jobs not yet started, waits
    for the running ones and is raised."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ecg-download") as pool:
        futures = [pool.submit(_fetch_file, job) for job in jobs]
        wait(futures, return_when=FIRST_EXCEPTION)
        for fut in futures:
            fut.cancel()
        for fut in futures:
            if not fut.cancelled() and fut.done() and fut.exception() is not None:
                raise fut.exception()  # type: ignore[misc]
        return [fut.result() for fut in futures]


def download(
    dataset: str,
    dest: Path,
    *,
    base_url: str | None = None,
    include: Sequence[str] | None = None,
    workers: int = 4,
    progress: Progress | None = None,
    retries: int = 3,
    backoff: float = 0.5,
    timeout: float = 60.0,
) -> DownloadReport:
    """Download the files of `dataset` that `include` selects into `dest`, verified by SHA-256.

    `base_url` replaces PhysioNet's URL (a mirror, or a test server); `include` replaces the
    dataset's default patterns (see `include_patterns` for the optional groups). `progress` is
    called from the worker threads. Transient failures (connection errors, timeouts, HTTP 408,
    429, 5xx, short bodies) are retried `retries` times, sleeping `backoff * 2**attempt` seconds,
    each retry resuming the `.part`. Other HTTP errors raise DownloadError at once; a hash
    mismatch deletes the `.part` and raises ChecksumError.
    """
    ds = get_dataset(dataset)
    if workers < 1 or retries < 0 or backoff < 0 or timeout <= 0:
        raise ConfigError(f"download: workers={workers}, retries={retries}, backoff={backoff}, "
                          f"timeout={timeout}; expected workers>=1, retries>=0, backoff>=0, timeout>0")
    root = (base_url or ds.base_url).rstrip("/") + "/"
    patterns = tuple(include) if include is not None else ds.include
    sums_url = root + SUMS_NAME
    sums_text = _retrying(sums_url, retries, backoff, lambda: _read_text(sums_url, timeout))
    entries = parse_sha256sums(str(sums_text), sums_url)
    chosen = select_files(list(entries), patterns)
    if not chosen:
        raise ConfigError(f"{dataset}: include patterns {list(patterns)} match none of the "
                          f"{len(entries)} files listed in {sums_url}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    jobs = [_Job(rel, _file_url(root, rel), entries[rel], dest.joinpath(*rel.split("/")),
                 retries, backoff, timeout, progress) for rel in chosen]
    outcomes = _run_jobs(jobs, workers)
    _write_atomic(dest / SUMS_NAME, str(sums_text))
    return DownloadReport(
        dataset=dataset,
        dest=dest,
        downloaded=tuple(j.rel for j, o in zip(jobs, outcomes) if o == "downloaded"),
        skipped=tuple(j.rel for j, o in zip(jobs, outcomes) if o == "skipped"),
        resumed=tuple(j.rel for j, o in zip(jobs, outcomes) if o == "downloaded" and j.resumed),
        bytes_received=sum(j.received for j in jobs),
    )


def _read_text(url: str, timeout: float) -> str:
    with _urlopen(url, timeout) as resp:
        data = resp.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DownloadError(f"{url}: not UTF-8 text ({exc}); expected a SHA256SUMS list") from None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
