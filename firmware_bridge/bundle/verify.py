"""Check a vendor bundle (`ecg-edge package`) before flashing it: `ecg-edge verify BUNDLE`.

Torch-free: a vendor or a Raspberry Pi runs it with the `[edge]` install (cryptography for the
signature, tflite-micro for the TFLite Micro check; ExecuTorch, which links libtorch, only for a
.bpte, imported when that check runs). The checks, in order, stop at the first failure (a
tampered model file must not reach an interpreter):

1. `manifest.json.sha256`: the manifest's bytes are the ones packaged (integrity);
2. signature (with a public key): `manifest.json.sig` is an Ed25519 signature of manifest.json's
   exact bytes by that key (authenticity; the manifest lists every other file's sha256);
3. checksums: every file in the manifest's `files` has its sha256; none is missing;
4. C array: `model_data.c` holds exactly the model file's bytes, with the declared length;
5. golden: each runtime check of the manifest runs golden.npz's inputs and compares with its
   expected outputs within the check's tolerance (int8: quantization steps), through
   `edge_runtime.backends` (TFLite Micro, LiteRT). A check a host cannot run (ExecuTorch's Cortex-M
   program, or a runtime not installed) is reported as "not run" with the reason;
6. firmware (`on="qemu"`, TFLite Micro bundles): the bundle's firmware/ built for the Cortex-M55 and
   for the host, run on QEMU's mps3-an547 and natively: every golden output bit-identical between
   the two, at most one step from the Python TFLite Micro interpreter with every decision equal
   (`firmware_bridge.bundle.firmware.check_firmware`).

`verify_bundle` returns a `BundleReport`; on a failure it raises `BundleError` (one line naming
the file and the check) carrying the report so far.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.artifact import Artifact, Manifest
from edge_runtime.errors import ArtifactError, EcgEdgeError, MissingExtraError
from firmware_bridge.bundle.format import (BUNDLE_FORMAT, MANIFEST, MANIFEST_SHA256, SEALS, SIGNATURE, TFLM_TARGETS,
                                           parse_c_array)

#: Ways to run a bundle's firmware (`verify_bundle(on=...)`).
FIRMWARE_RUNNERS = ("qemu",)


class BundleError(ArtifactError):
    """A bundle check failed; `report` holds the checks run so far, the failed one last."""

    def __init__(self, message: str, report: "BundleReport | None" = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Check:
    name: str
    status: str  # "ok", "failed" or "not run"
    detail: str


@dataclass
class BundleReport:
    path: Path
    target: str = ""
    checks: list[Check] = field(default_factory=list)
    firmware: dict[str, Any] | None = None  # the figures of the firmware check, when it ran

    @property
    def ok(self) -> bool:
        return all(c.status != "failed" for c in self.checks)

    def rows(self) -> list[tuple[str, str, str]]:
        return [(c.name, c.status, c.detail) for c in self.checks]


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class _Run:
    """Accumulates checks; `fail` records the failed check and raises."""

    def __init__(self, path: Path) -> None:
        self.report = BundleReport(path)

    def ok(self, name: str, detail: str) -> None:
        self.report.checks.append(Check(name, "ok", detail))

    def skip(self, name: str, detail: str) -> None:
        self.report.checks.append(Check(name, "not run", detail))

    def fail(self, file: Path, name: str, detail: str) -> None:
        self.report.checks.append(Check(name, "failed", detail))
        raise BundleError(f"{file}: {name} check failed: {detail}", self.report)


def verify_bundle(path: str | Path, pubkey: str | Path | None = None, on: str | None = None,
                  tflm: str | Path | None = None) -> BundleReport:
    """Run every check of the module docstring on the bundle folder `path`; raise BundleError on a failure.

    on: "qemu" also builds and runs the firmware (TFLite Micro bundles); tflm: the vendored TFLite
    Micro tree for that build (`firmware.tflm_tree`)."""
    if on is not None and on not in FIRMWARE_RUNNERS:
        raise BundleError(f"on: expected one of {FIRMWARE_RUNNERS}, got {on!r}")
    root = Path(path)
    run = _Run(root)
    mpath = root / MANIFEST
    if not mpath.is_file():
        run.fail(mpath, "manifest", "not found (is this a bundle folder from `ecg-edge package`?)")
    blob = mpath.read_bytes()
    _check_manifest_digest(run, root, blob)
    _check_signature(run, root, blob, pubkey)
    try:
        man = json.loads(blob)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        run.fail(mpath, "manifest", f"not valid JSON ({exc})")
    if not isinstance(man, dict) or man.get("bundle_format") != BUNDLE_FORMAT:
        run.fail(mpath, "manifest", f"bundle_format: expected {BUNDLE_FORMAT}, got "
                                    f"{man.get('bundle_format') if isinstance(man, dict) else man!r}")
    run.report.target = str(man.get("target", ""))
    _check_files(run, root, man)
    _check_c_array(run, root, man)
    arrays = _check_golden(run, root, man)
    if on == "qemu":
        _check_firmware(run, root, man, arrays, tflm)
    return run.report


def _check_manifest_digest(run: _Run, root: Path, blob: bytes) -> None:
    f = root / MANIFEST_SHA256
    if not f.is_file():
        run.fail(f, "manifest checksum", "not found")
    want = f.read_text(encoding="utf-8", errors="replace").split()[:1]
    got = hashlib.sha256(blob).hexdigest()
    if want != [got]:
        run.fail(root / MANIFEST, "manifest checksum",
                 f"sha256 {got} differs from manifest.json.sha256 ({want[0] if want else 'empty'}): the manifest changed")
    run.ok("manifest checksum", "manifest.json matches manifest.json.sha256")


def _check_signature(run: _Run, root: Path, blob: bytes, pubkey: str | Path | None) -> None:
    sig = root / SIGNATURE
    if pubkey is None:
        run.skip("signature", "no --pubkey given" + (" (the bundle is signed)" if sig.is_file() else
                                                      " (the bundle is not signed)"))
        return
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise MissingExtraError("checking a signature needs cryptography: pip install 'ecg-edge[edge]'") from None
    try:
        key = serialization.load_pem_public_key(Path(pubkey).read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{pubkey}: signature check failed: not a readable PEM public key ({exc})",
                          run.report) from None
    if not isinstance(key, Ed25519PublicKey):
        run.fail(Path(pubkey), "signature", f"expected an Ed25519 public key, got {type(key).__name__}")
    if not sig.is_file():
        run.fail(sig, "signature", "not found: the bundle is not signed")
    try:
        key.verify(sig.read_bytes(), blob)
    except InvalidSignature:
        run.fail(root / "manifest.json", "signature",
                 f"manifest.json.sig is not a valid Ed25519 signature of manifest.json by {pubkey}")
    run.ok("signature", f"Ed25519, key {Path(pubkey).name}")


def _check_files(run: _Run, root: Path, man: dict[str, Any]) -> None:
    files = man.get("files")
    if not isinstance(files, dict) or not files:
        run.fail(root / "manifest.json", "checksums", "manifest has no `files` table")
    for rel, want in files.items():
        f = root / rel
        if not f.is_file():
            run.fail(f, "checksums", "listed in manifest.json files but not found")
        got = _sha256(f)
        if got != want:
            run.fail(f, "checksums", f"sha256 {got} differs from the manifest's {want}: the file changed")
    extra = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                   and str(p.relative_to(root)) not in files
                   and p.name not in SEALS)
    run.ok("checksums", f"{len(files)} files match manifest.json"
           + (f"; not in the manifest (ignored): {', '.join(extra)}" if extra else ""))


def _check_c_array(run: _Run, root: Path, man: dict[str, Any]) -> None:
    model = man["model"]
    c = model["c_array"]
    src, mfile = root / c["source"], root / model["file"]
    try:
        name, data, length = parse_c_array(src.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        run.fail(src, "C array", str(exc))
    want = mfile.read_bytes()
    if name != c["name"]:
        run.fail(src, "C array", f"array is named {name!r}, the manifest says {c['name']!r}")
    if length != len(data) or data != want:
        where = next((i for i, (a, b) in enumerate(zip(data, want)) if a != b), min(len(data), len(want)))
        run.fail(src, "C array", f"{len(data)} bytes (declared {length}) differ from {model['file']} "
                                 f"({len(want)} bytes) at byte {where}")
    run.ok("C array", f"{c['source']}: {name}[{length}] equals {model['file']}")


def bundle_artifact(root: Path, man: dict[str, Any], model_file: str) -> Artifact:
    """The bundle's .tflite as an artifact for `edge_runtime.backends`: the source artifact's manifest
    (stored whole in the bundle) pointed at the bundle's model file."""
    model = root / model_file
    try:
        manifest = Manifest.from_dict({**man["source_artifact"], "model_file": model.name, "sha256": _sha256(model)})
    except (EcgEdgeError, KeyError, TypeError) as exc:
        raise BundleError(f"{root / MANIFEST}: source_artifact: not an artifact manifest ({exc})") from None
    return Artifact(manifest, model.resolve(), (root / MANIFEST).resolve())


def _tflm_arena(man: dict[str, Any]) -> int:
    return int(man["tflm"].get("cpu_only_arena_bytes") or man["tflm"]["arena_bytes"])


def golden_run(root: Path, man: dict[str, Any], model_file: str, runtime: str, x_q: np.ndarray) -> np.ndarray:
    """Raw outputs of a bundle model for int8 golden windows on a host runtime ("tflite_micro" or
    "litert"), through `edge_runtime.backends`."""
    from edge_runtime.backends import open_backend

    arena = _tflm_arena(man) if runtime == "tflite_micro" else None
    return open_backend(bundle_artifact(root, man, model_file), runtime, arena=arena).run_quantized(x_q)


def _check_golden(run: _Run, root: Path, man: dict[str, Any]) -> dict[str, np.ndarray]:
    g = man["golden"]
    gfile = root / g["file"]
    with np.load(gfile, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for c in g["checks"]:
        name = f"golden: {c['name']}"
        if c.get("not_run"):
            run.skip(name, c["not_run"])
            continue
        model = root / c["model"]
        if c["runtime"] == "executorch":
            _golden_bpte(run, name, model, c)
            continue
        x, want = arrays[c["input"]], arrays[c["expected"]]
        try:
            got = golden_run(root, man, c["model"], c["runtime"], x)
        except MissingExtraError as exc:
            run.skip(name, f"not run: {exc}")
            continue
        diff = int(np.abs(got.astype(np.int32) - want.astype(np.int32)).max()) if got.shape == want.shape else None
        if diff is None or diff > c["tolerance"]:
            what = f"shape {got.shape} vs {want.shape}" if diff is None else f"max difference {diff} steps"
            run.fail(gfile, name, f"{c['model']} on {c['runtime']} gives outputs {what} from {c['expected']} "
                                  f"(tolerance {c['tolerance']} steps)")
        run.ok(name, f"{len(x)} windows, max difference {diff} steps (tolerance {c['tolerance']})")
    return arrays


def _check_firmware(run: _Run, root: Path, man: dict[str, Any], arrays: dict[str, np.ndarray],
                    tflm: str | Path | None) -> None:
    """Build and run firmware/ (module docstring, step 6); one check row with the measured figures."""
    from firmware_bridge.bundle import firmware as fw

    name = f"firmware: {fw.BOARD}"
    if man.get("target") not in TFLM_TARGETS or not (man.get("firmware") or {}).get("folder"):
        run.fail(root / MANIFEST, name, f"target {man.get('target')!r} has no firmware project; package the int8 "
                                        f".tflite with --target {' or '.join(TFLM_TARGETS)}")
    reference, ref_name = arrays["expected_tflite_micro"], "golden.npz expected_tflite_micro (recorded at packaging)"
    try:
        reference = golden_run(root, man, "model.tflite", "tflite_micro", arrays["x_q"])
        ref_name = "the Python tflite-micro interpreter"
    except MissingExtraError:
        pass  # tflite-micro is not installed here: compare with what it gave at packaging
    t = man["output"]["tensor"]
    try:
        r = fw.check_firmware(root, x_q=arrays["x_q"], reference=reference, reference_name=ref_name,
                              output_scale=t["scale"], output_zero_point=t["zero_point"],
                              thresholds=man["output"]["thresholds"], multilabel=man["output"]["multilabel"],
                              tree=fw.tflm_tree(tflm))
    except fw.FirmwareError as exc:
        run.fail(root / fw.FIRMWARE_DIR, name, str(exc).removeprefix(f"{root}: "))
    mem, insns = r["memory"], r["instructions_per_inference"]
    run.ok(name, f"{r['windows']} golden windows: bit-identical to the host build on {r['bit_exact_windows']}, "
                 f"{r['values_differing_from_reference']} values 1 step from {ref_name}, decisions equal on "
                 f"{r['decisions_equal']}; flash {mem['flash_bytes']} B, RAM {mem['ram_bytes']} B "
                 f"(arena used {mem['arena_used_bytes']}, stack {mem['stack_peak_bytes']}), "
                 f"{insns['median']:,} instructions per inference")
    run.report.firmware = r


def _golden_bpte(run: _Run, name: str, bpte: Path, c: dict[str, Any]) -> None:
    """Every bundled test case of the .bpte on the ExecuTorch runtime, within the check's tolerance."""
    try:
        from executorch.extension.pybindings.portable_lib import _load_bundled_program_from_buffer
    except ImportError:
        run.skip(name, "not run: executorch not installed (pip install 'ecg-edge[export]')")
        return
    try:
        module = _load_bundled_program_from_buffer(bpte.read_bytes())
    except Exception as exc:  # noqa: BLE001 - the runtime's loader raises whatever it raises
        run.fail(bpte, name, f"not a loadable bundled program ({type(exc).__name__}: {exc})")
    n = int(c.get("test_cases") or 0) or _count_cases(module)
    for i in range(n):
        try:
            module.verify_result_with_bundled_expected_output("forward", i, rtol=0.0, atol=float(c["tolerance"]))
        except RuntimeError as exc:
            run.fail(bpte, name, f"bundled test case {i} differs beyond atol {c['tolerance']:g}: {exc}")
    run.ok(name, f"{n} bundled test cases pass on the ExecuTorch runtime (atol {c['tolerance']:g})")


def _count_cases(module: Any) -> int:
    """Test cases in a loaded bundle: run indices until the runtime refuses one."""
    n = 0
    while True:
        try:
            module.verify_result_with_bundled_expected_output("forward", n, rtol=1e9, atol=1e9)
        except (RuntimeError, IndexError):
            return n
        n += 1
