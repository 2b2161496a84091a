"""The bad-input corpus of vendor bundles: `ecg-edge verify` on bundles an attacker or an accident made.

One real signed TFLite Micro bundle is packaged per module; each case copies it, breaks one thing and,
where an attacker would, re-seals it (every `files` sha256 and manifest.json.sha256 recomputed, so the
integrity checks alone pass). Every case must end `verify` with one `ecg-edge: error:` line naming the
path or field (tests/cli_errors.py), never a traceback and never "verified". Below the table: what a
keyless verify says of a re-sealed bundle, and the TFLite Micro check on a machine without tflite-micro.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

pytest.importorskip("tflite_micro", reason="the 'export' extra (tflite-micro) runs the bundles' golden check")
pytest.importorskip("ai_edge_litert", reason="the 'edge' extra (ai-edge-litert) runs the bundles' .tflite")
pytest.importorskip("cryptography", reason="the 'edge' extra (cryptography) checks the bundles' signatures")

from cli_errors import assert_one_error_line  # noqa: E402
from ecg_edge.cli import main  # noqa: E402
from firmware_bridge.bundle import BundleError, render_c_array, verify_bundle  # noqa: E402

pytestmark = pytest.mark.slow  # every case corrupts a bundle made from conftest.student_export


@pytest.fixture(scope="module")
def signed(student_export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A signed tflm bundle of the session's int8 student, its key pair and another key."""
    out = tmp_path_factory.mktemp("bad_bundles")
    assert main(["keygen", "--out", str(out / "good")]) == 0
    assert main(["keygen", "--out", str(out / "other")]) == 0
    assert main(["package", "--artifact", str(student_export / "tflite-int8"), "--target", "tflm",
                 "--out", str(out / "tflm"), "--sign", str(out / "good" / "signing_key.pem")]) == 0
    return {"bundle": out / "tflm", "pub": out / "good" / "signing_key.pub.pem",
            "wrong_pub": out / "other" / "signing_key.pub.pem"}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(b: Path) -> dict[str, Any]:
    return json.loads((b / "manifest.json").read_text())


def reseal(b: Path, man: dict[str, Any], pad: int = 0) -> None:
    """What an attacker without the signing key does: recompute every listed file's sha256 (where the
    name reaches a file, inside the bundle or not) and manifest.json.sha256; the old signature stays."""
    if isinstance(man.get("files"), dict):
        man["files"] = {rel: (_sha(b / rel) if (b / rel).is_file() else sha) for rel, sha in man["files"].items()}
    blob = (json.dumps(man, indent=2) + " " * pad + "\n").encode()
    (b / "manifest.json").write_bytes(blob)
    (b / "manifest.json.sha256").write_text(f"{hashlib.sha256(blob).hexdigest()}  manifest.json\n")


def edit(b: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Change the manifest with `change(man)` and re-seal it."""
    man = manifest(b)
    change(man)
    reseal(b, man)


def outside_model(b: Path) -> Path:
    """A copy of the bundle's model beside the bundle folder: same bytes, same sha256, not in the bundle."""
    evil = b.parent / "evil.tflite"
    shutil.copyfile(b / "model.tflite", evil)
    return evil


def point_out(field_path: str, absolute: bool = False) -> Callable[[Path], None]:
    """A case: the manifest field `field_path` (dotted, list indices as numbers) names a copy of the
    model outside the bundle ("../evil.tflite", or its absolute path), listed in `files`, re-sealed."""
    def make(b: Path) -> None:
        evil = outside_model(b)
        rel = str(evil) if absolute else "../evil.tflite"

        def change(man: dict[str, Any]) -> None:
            *parents, last = field_path.split(".")
            node: Any = man
            for k in parents:
                node = node[int(k)] if isinstance(node, list) else node[k]
            node[last] = rel
            man["files"][rel] = _sha(evil)
        edit(b, change)
    return make


def symlink_model_out(b: Path) -> None:
    """model.tflite replaced by a symlink to the same bytes outside: no sha256 changes, no re-seal."""
    evil = outside_model(b)
    (b / "model.tflite").unlink()
    os.symlink(evil, b / "model.tflite")


def add_unlisted(b: Path, rel: str) -> None:
    (b / rel).parent.mkdir(parents=True, exist_ok=True)
    (b / rel).write_bytes(b"not packaged\n")


def oversize_manifest(b: Path) -> None:
    reseal(b, manifest(b), pad=(1 << 20) + 10)


def nested_manifest(b: Path) -> None:
    """Valid JSON nested past the parser's recursion limit, sealed."""
    blob = b"[" * 100_000 + b"]" * 100_000
    (b / "manifest.json").write_bytes(blob)
    (b / "manifest.json.sha256").write_text(f"{hashlib.sha256(blob).hexdigest()}  manifest.json\n")


def golden_arrays(b: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Rewrite golden.npz with `change(arrays)` applied, and re-seal."""
    with np.load(b / "golden.npz") as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    np.savez(b / "golden.npz", **arrays)
    reseal(b, manifest(b))


def invalid_flatbuffer(b: Path, runtimes: tuple[str, ...]) -> None:
    """model.tflite replaced by bytes that are no flatbuffer, the C array regenerated from them and
    everything re-sealed: only the runtimes in `runtimes` keep their golden checks."""
    data = bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))
    (b / "model.tflite").write_bytes(data)
    header, source = render_c_array(data, "ecg_model", "model.tflite")
    (b / "model_data.h").write_text(header)
    (b / "model_data.c").write_text(source)

    def change(man: dict[str, Any]) -> None:
        man["golden"]["checks"] = [c for c in man["golden"]["checks"] if c["runtime"] in runtimes]
        man["model"]["bytes"] = len(data)
    edit(b, change)


def delete_signature(b: Path) -> None:
    (b / "manifest.json.sig").unlink()


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path], None]
    names: tuple[str, ...]  # what the one error line must name
    args: tuple[str, ...] = ()  # "{pub}" / "{wrong_pub}" stand for the keys


def _del(*keys: str) -> Callable[[dict[str, Any]], None]:
    def change(man: dict[str, Any]) -> None:
        node = man
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
    return change


def _set(value: Any, *keys: Any) -> Callable[[dict[str, Any]], None]:
    def change(man: dict[str, Any]) -> None:
        node = man
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return change


CASES = [
    # --- paths confined to the bundle folder
    Case("files-traversal", lambda b: edit(b, _set(_sha(outside_model(b)), "files", "../evil.tflite")),
         ("files", "../evil.tflite")),
    Case("files-etc-passwd", lambda b: edit(b, _set("0" * 64, "files", "../../../../../../../../etc/passwd")),
         ("files", "etc/passwd")),
    Case("files-absolute", lambda b: edit(b, _set(_sha(outside_model(b)), "files", str(b.parent / "evil.tflite"))),
         ("files", "evil.tflite")),
    Case("model-file-outside", point_out("model.file"),
         ("model.file", "../evil.tflite")),
    Case("model-file-absolute", point_out("model.file", absolute=True), ("model.file", "evil.tflite")),
    Case("c-array-source-outside", point_out("model.c_array.source"),
         ("model.c_array.source", "../evil.tflite")),
    Case("golden-model-outside", point_out("golden.checks.0.model"),
         ("golden.checks[0].model", "../evil.tflite")),
    Case("golden-file-outside", point_out("golden.file"),
         ("golden.file", "../evil.tflite")),
    Case("model-symlink-escapes", symlink_model_out, ("model.tflite", "outside")),
    Case("model-file-unlisted", lambda b: edit(b, _del("files", "model.tflite")), ("model.file", "model.tflite")),
    Case("unlisted-file", lambda b: add_unlisted(b, "extra.bin"), ("extra.bin", "not in the manifest")),
    Case("unlisted-file-in-firmware", lambda b: add_unlisted(b, "firmware/manifest.json"),
         ("firmware/manifest.json", "not in the manifest")),
    Case("unlisted-build-output", lambda b: add_unlisted(b, "firmware/build/cm55/firmware.elf"),
         ("firmware/build/cm55/firmware.elf", "rm -rf firmware/build")),
    Case("unlisted-symlinked-folder", lambda b: os.symlink(b.parent, b / "escape_link"),
         ("escape_link", "not in the manifest")),
    # --- the manifest itself
    Case("oversize-manifest", oversize_manifest, ("manifest.json", "1048576")),
    Case("nested-manifest", nested_manifest, ("manifest.json", "not valid JSON")),
    Case("no-model", lambda b: edit(b, _del("model")), ("manifest.json", "model: missing")),
    Case("no-golden", lambda b: edit(b, _del("golden")), ("manifest.json", "golden: missing")),
    Case("no-c-array", lambda b: edit(b, _del("model", "c_array")), ("model.c_array: missing",)),
    Case("golden-checks-not-a-list", lambda b: edit(b, _set("all", "golden", "checks")), ("golden.checks", "list")),
    Case("golden-unknown-runtime", lambda b: edit(b, lambda m: m["golden"]["checks"][0].update(runtime="tvm")),
         ("golden.checks[0].runtime", "tvm")),
    Case("golden-missing-array", lambda b: edit(b, lambda m: m["golden"]["checks"][0].update(input="x_nope")),
         ("golden.npz", "x_nope")),
    Case("golden-object-array", lambda b: golden_arrays(b, lambda a: a.update(x_q=np.array([{"a": 1}], dtype=object))),
         ("golden.npz", "x_q")),
    Case("files-not-a-table", lambda b: edit(b, _set(["model.tflite"], "files")), ("manifest.json", "files")),
    # --- models no runtime can open, their sha256 matching
    Case("invalid-flatbuffer-tflm", lambda b: invalid_flatbuffer(b, ("tflite_micro",)), ("model.tflite", "flatbuffer")),
    Case("invalid-flatbuffer-litert", lambda b: invalid_flatbuffer(b, ("litert",)), ("model.tflite", "flatbuffer")),
    # --- authenticity
    Case("keyless-require-signature", lambda b: None, ("--require-signature", "--pubkey"), ("--require-signature",)),
    Case("unsigned-require-signature", delete_signature, ("manifest.json.sig", "not signed"),
         ("--pubkey", "{pub}", "--require-signature")),
    Case("wrong-key", lambda b: None, ("signature", "manifest.json"), ("--pubkey", "{wrong_pub}")),
    Case("resealed-with-key", lambda b: edit(b, _set([0.0] * len(manifest(b)["output"]["labels"]), "output",
                                                     "thresholds")),
         ("signature", "manifest.json"), ("--pubkey", "{pub}")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_bundle_gives_one_error_line(case: Case, signed: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    b = Path(shutil.copytree(signed["bundle"], tmp_path / "bundle", symlinks=True))
    case.make(b)
    args = [a.format(pub=signed["pub"], wrong_pub=signed["wrong_pub"]) for a in case.args]
    line = assert_one_error_line(["verify", str(b), *args], capsys, *case.names)
    assert "verified" not in line


def test_keyless_verify_of_a_resealed_bundle_says_not_authenticated(signed: dict[str, Path], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """Integrity without a key is not authenticity: a re-sealed change (every decision threshold 0) passes
    the checksums, so the keyless result says loudly that nothing was authenticated; a key catches it."""
    b = Path(shutil.copytree(signed["bundle"], tmp_path / "bundle"))
    edit(b, _set([0.0] * len(manifest(b)["output"]["labels"]), "output", "thresholds"))
    capsys.readouterr()
    assert main(["verify", str(b)]) == 0  # the default: exit 0 (integrity holds), with the warning
    out = capsys.readouterr()
    last = out.out.strip().splitlines()[-1]
    assert "integrity verified, NOT authenticated" in last and "--pubkey" in last and "re-sealed" in last
    assert "NOT authenticated" in out.err  # on stderr too: a script that drops stdout still sees it
    report = verify_bundle(b)
    assert report.ok and not report.authenticated
    with pytest.raises(BundleError, match="--require-signature"):
        verify_bundle(b, require_signature=True)
    assert verify_bundle(signed["bundle"], pubkey=signed["pub"], require_signature=True).authenticated
    assert main(["verify", str(signed["bundle"]), "--pubkey", str(signed["pub"])]) == 0
    assert "authenticated" in capsys.readouterr().out.strip().splitlines()[-1]


def _without_tflite_micro(monkeypatch: pytest.MonkeyPatch, machine: str) -> None:
    for name in [m for m in sys.modules if m == "tflite_micro" or m.startswith("tflite_micro.")] + ["tflite_micro"]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: the import raises ImportError
    monkeypatch.setattr(platform, "machine", lambda: machine)


@pytest.mark.parametrize("machine, says", [("aarch64", "not available on aarch64: tflite-micro has x86-64 wheels only"),
                                           ("x86_64", "not installed: pip install tflite-micro")])
def test_tflite_micro_missing_is_reported_not_failed(signed: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                    machine: str, says: str) -> None:
    """A Raspberry Pi has no tflite-micro wheel: verify shows the TFLite Micro golden check as unavailable
    there (saying why) and still runs the LiteRT one; verify passes."""
    _without_tflite_micro(monkeypatch, machine)
    report = verify_bundle(signed["bundle"], pubkey=signed["pub"])
    rows = {c.name: c for c in report.checks}
    assert rows["golden: tflite_micro"].status == "not run" and rows["golden: tflite_micro"].detail == says
    assert rows["golden: litert"].status == "ok" and report.ok and report.authenticated
    assert main(["verify", str(signed["bundle"])]) == 0
