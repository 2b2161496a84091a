"""What an output records about where it came from: file digests and package versions.

Standard library only (hashlib, importlib.metadata), so the download tool, the shard builder, the
artifact writer, the bundle packager and verifier and the benchmarks share these two without
pulling in numpy or scipy.
"""
from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path
from typing import Iterable


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks: the one file digest of the project (artifacts,
    bundles, shards, downloads)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def package_versions(names: Iterable[str], missing: str | None = "unknown") -> dict[str, str | None]:
    """Installed version of each distribution in `names` (`importlib.metadata`), `missing` for one
    that is not installed: the one version lookup behind every manifest, bundle and bench record."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = missing
    return out
