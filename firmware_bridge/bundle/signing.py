"""Ed25519 keys for bundle signatures: `ecg-edge keygen`, and loading a key to sign with.

The signature (`manifest.json.sig`, raw 64 bytes) covers the exact bytes of manifest.json, which
lists every other file's sha256: one signature authenticates the whole bundle.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from edge_runtime.errors import ConfigError, require


def _serialization() -> Any:
    return require("cryptography.hazmat.primitives.serialization", "edge", "signing")


def keygen(out: str | Path) -> tuple[Path, Path]:
    """Write an Ed25519 key pair into `out`: signing_key.pem (PKCS#8, mode 0600) and signing_key.pub.pem."""
    serialization = _serialization()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    priv, pub = folder / "signing_key.pem", folder / "signing_key.pub.pem"
    if priv.exists():
        raise ConfigError(f"{priv}: exists already; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def load_private_key(path: str | Path) -> Any:
    """The Ed25519 private key in PEM file `path` (ConfigError naming the file otherwise)."""
    serialization = _serialization()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a readable unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: expected an Ed25519 private key (ecg-edge keygen), got {type(key).__name__}")
    return key


def public_key_sha256(key: Any) -> str:
    """sha256 of the raw 32-byte Ed25519 public key: the fingerprint the manifest records."""
    serialization = _serialization()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()
