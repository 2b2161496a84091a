"""Check a vendor bundle (`ecg-edge package`) before flashing it: `ecg-edge verify BUNDLE`.

Torch-free: a vendor or a Raspberry Pi runs it with the `[edge]` install (cryptography for the
signature, tflite-micro for the TFLite Micro check; ExecuTorch, which links libtorch, only for a
.bpte, imported when that check runs). The checks, in order, stop at the first failure (a
tampered model file must not reach an interpreter):

1. `manifest.json.sha256`: the manifest's bytes (at most `MANIFEST_MAX_BYTES`) are the ones
   packaged (integrity);
2. signature (with a public key): `manifest.json.sig` is an Ed25519 signature of manifest.json's
   exact bytes by that key (authenticity; the manifest lists every other file's sha256). Without a
   key nothing is authenticated: anyone can re-seal a changed bundle so that every other check
   passes; the report says so (`BundleReport.authenticated`), and `require_signature` refuses it;
3. manifest: the fields verify reads are there with their types, and every file the manifest names
   (`model.file`, `model.c_array.source`, `golden.file`, each golden check's model) is inside the
   bundle folder (`edge_runtime.artifact.inside`: no "..", no absolute path, no symlink leading out)
   and listed in `files`. A manifest is input: a re-sealed one must fail with one line, not a traceback;
4. checksums: every file in the manifest's `files` is inside the folder and has its sha256; none is
   missing, and the folder holds no file the manifest does not list;
5. C array: `model_data.c` holds exactly the model file's bytes, with the declared length;
6. golden: each runtime check of the manifest runs golden.npz's inputs (numeric arrays, loaded
   without pickle) and compares with its expected outputs within the check's tolerance (int8:
   quantization steps), through `edge_runtime.backends` (TFLite Micro, LiteRT). A check a host cannot
   run (ExecuTorch's Cortex-M program, or a runtime not installed, such as tflite-micro on a Raspberry
   Pi: it has x86-64 wheels only) is reported as "not run" with the reason and does not fail;
7. firmware (`on="qemu"`, TFLite Micro bundles): the bundle's firmware/ built for the Cortex-M55 and
   for the host, run on QEMU's mps3-an547 and natively: every golden output bit-identical between
   the two, at most one step from the Python TFLite Micro interpreter with every decision equal
   (`firmware_bridge.bundle.firmware.check_firmware`).

`verify_bundle` returns a `BundleReport`; on a failure it raises `BundleError` (one line naming
the file and the check) carrying the report so far.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from edge_runtime.artifact import MANIFEST_MAX_BYTES, Artifact, Manifest, inside, read_manifest
from edge_runtime.errors import ArtifactError, EcgEdgeError, MissingExtraError, missing_extra, unavailable
from edge_runtime.provenance import sha256_of
from firmware_bridge.bundle.format import (BUNDLE_FORMAT, MANIFEST, MANIFEST_SHA256, SEALS, SIGNATURE, TFLM_TARGETS,
                                           parse_c_array)

#: Ways to run a bundle's firmware (`verify_bundle(on=...)`).
FIRMWARE_RUNNERS = ("qemu",)
#: Largest manifest.json.sha256 / manifest.json.sig read (bytes): they hold 80 and 64.
SEAL_MAX_BYTES = 4096
#: Manifest fields every verify reads, with their JSON types (checked before use: `_check_layout`).
_FIELDS: tuple[tuple[str, Any], ...] = (
    ("files", dict), ("model", dict), ("model.file", str), ("model.c_array", dict), ("model.c_array.source", str),
    ("model.c_array.name", str), ("golden", dict), ("golden.file", str), ("golden.checks", list),
    ("source_artifact", dict))
#: ... and those the firmware check (`on="qemu"`) reads too.
_FIRMWARE_FIELDS: tuple[tuple[str, Any], ...] = (
    ("output.tensor.scale", (int, float)), ("output.tensor.zero_point", int), ("output.thresholds", list),
    ("output.multilabel", bool))
#: Golden check runtime -> the fields of its check (beside `name`).
_CHECK_FIELDS: dict[str, tuple[tuple[str, Any], ...]] = {
    rt: (("model", str), ("input", str), ("expected", str), ("tolerance", (int, float)))
    for rt in ("tflite_micro", "litert")} | {"executorch": (("model", str), ("tolerance", (int, float)))}
_KINDS = {dict: "a table", list: "a list", str: "a string", int: "an integer", bool: "true or false"}


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

    @property
    def authenticated(self) -> bool:
        """The signature was checked with a public key: without one, `ok` is integrity only."""
        return any(c.name == "signature" and c.status == "ok" for c in self.checks)

    def rows(self) -> list[tuple[str, str, str]]:
        return [(c.name, c.status, c.detail) for c in self.checks]


class _Run:
    """Accumulates checks; `fail` records the failed check and raises."""

    def __init__(self, path: Path) -> None:
        self.report = BundleReport(path)

    def ok(self, name: str, detail: str) -> None:
        self.report.checks.append(Check(name, "ok", detail))

    def skip(self, name: str, detail: str) -> None:
        self.report.checks.append(Check(name, "not run", detail))

    def fail(self, file: Path, name: str, detail: str) -> NoReturn:
        self.report.checks.append(Check(name, "failed", detail))
        raise BundleError(f"{file}: {name} check failed: {detail}", self.report)


def verify_bundle(path: str | Path, pubkey: str | Path | None = None, on: str | None = None,
                  tflm: str | Path | None = None, require_signature: bool = False) -> BundleReport:
    """Run every check of the module docstring on the bundle folder `path`; raise BundleError on a failure.

    on: "qemu" also builds and runs the firmware (TFLite Micro bundles); tflm: the vendored TFLite
    Micro tree for that build (`firmware.tflm_tree`). require_signature: fail unless the signature is
    checked and valid (a `pubkey` given and the bundle signed); without it a keyless verify passes on
    integrity alone and the report says it is not authenticated."""
    if on is not None and on not in FIRMWARE_RUNNERS:
        raise BundleError(f"on: expected one of {FIRMWARE_RUNNERS}, got {on!r}")
    root = Path(path)
    run = _Run(root)
    mpath = root / MANIFEST
    if not mpath.is_file():
        run.fail(mpath, "manifest", "not found (is this a bundle folder from `ecg-edge package`?)")
    blob = _read(run, mpath, "manifest", MANIFEST_MAX_BYTES)
    _check_manifest_digest(run, root, blob)
    _check_signature(run, root, blob, pubkey, require_signature)
    man = _parse_manifest(run, mpath, blob)
    run.report.target = str(man.get("target", ""))
    _check_layout(run, root, man, firmware=on is not None)
    _check_files(run, root, man)
    _check_c_array(run, root, man)
    arrays = _check_golden(run, root, man)
    if on == "qemu":
        _check_firmware(run, root, man, arrays, tflm)
    return run.report


def _read(run: _Run, path: Path, name: str, cap: int) -> bytes:
    """A seal or the manifest, read with a size cap (`edge_runtime.artifact.read_manifest`)."""
    try:
        return read_manifest(path, cap)
    except ArtifactError as exc:
        run.fail(path, name, str(exc).removeprefix(f"{path}: "))
    except OSError as exc:
        run.fail(path, name, f"not readable ({exc.strerror or exc})")


def _parse_manifest(run: _Run, mpath: Path, blob: bytes) -> dict[str, Any]:
    try:
        man = json.loads(blob)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        run.fail(mpath, "manifest", f"not valid JSON ({type(exc).__name__}: {str(exc)[:200]})")
    if not isinstance(man, dict) or man.get("bundle_format") != BUNDLE_FORMAT:
        run.fail(mpath, "manifest", f"bundle_format: expected {BUNDLE_FORMAT}, got "
                                    f"{man.get('bundle_format') if isinstance(man, dict) else man!r}")
    return man


def _check_manifest_digest(run: _Run, root: Path, blob: bytes) -> None:
    f = root / MANIFEST_SHA256
    if not f.is_file():
        run.fail(f, "manifest checksum", "not found")
    want = _read(run, f, "manifest checksum", SEAL_MAX_BYTES).decode("utf-8", errors="replace").split()[:1]
    got = hashlib.sha256(blob).hexdigest()
    if want != [got]:
        run.fail(root / MANIFEST, "manifest checksum",
                 f"sha256 {got} differs from manifest.json.sha256 ({want[0] if want else 'empty'}): the manifest changed")
    run.ok("manifest checksum", "manifest.json matches manifest.json.sha256")


#: What a keyless verify proves, said in its signature row and its result line.
NOT_AUTHENTICATED = "NOT authenticated: no --pubkey given; anyone could have re-sealed this bundle"


def _check_signature(run: _Run, root: Path, blob: bytes, pubkey: str | Path | None,
                     require_signature: bool = False) -> None:
    sig = root / SIGNATURE
    if pubkey is None:
        if require_signature:
            run.fail(root, "signature", "a signature is required (--require-signature) but no public key was "
                                        "given (--pubkey): without it the bundle cannot be authenticated")
        run.skip("signature", NOT_AUTHENTICATED + (" (it is signed: give --pubkey to check)" if sig.is_file() else
                                                   " (it is not signed)"))
        return
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise missing_extra("checking a signature", "cryptography", "edge") from None
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
        key.verify(_read(run, sig, "signature", SEAL_MAX_BYTES), blob)
    except InvalidSignature:
        run.fail(root / "manifest.json", "signature",
                 f"manifest.json.sig is not a valid Ed25519 signature of manifest.json by {pubkey}")
    run.ok("signature", f"Ed25519, key {Path(pubkey).name}")


def _field(run: _Run, mpath: Path, obj: Any, dotted: str, kind: Any, where: str = "") -> Any:
    """`obj`'s field at `dotted` ("model.c_array.source") if it has JSON type `kind`; else fail naming it.
    A keyless verify reads a manifest anyone may have re-sealed: a missing key is one line, not a KeyError."""
    name = f"{where}.{dotted}" if where else dotted
    want = _KINDS.get(kind, "a number")
    value = obj
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            run.fail(mpath, "manifest", f"{name}: missing; expected {want}")
        value = value[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        run.fail(mpath, "manifest", f"{name}: expected {want}, got {type(value).__name__} {str(value)[:40]!r}")
    return value


def _member(run: _Run, root: Path, man: dict[str, Any], rel: str, name: str) -> Path:
    """The path of a file the manifest names in field `name`: inside the bundle and listed in `files`
    (so its sha256 is checked), else fail naming the field and the path."""
    try:
        path = inside(root, rel, name)
    except ArtifactError as exc:
        run.fail(root / MANIFEST, "manifest", str(exc))
    if rel not in man["files"]:
        run.fail(root / MANIFEST, "manifest", f"{name}: {rel!r} is not in the manifest's files table (its sha256 "
                                              "would not be checked); expected a listed file")
    return path


def _check_layout(run: _Run, root: Path, man: dict[str, Any], firmware: bool) -> None:
    """Step 3 of the module docstring: the fields verify reads and the files they name."""
    mpath = root / MANIFEST
    for dotted, kind in _FIELDS + (_FIRMWARE_FIELDS if firmware else ()):
        _field(run, mpath, man, dotted, kind)
    model = man["model"]
    for rel, name in ((model["file"], "model.file"), (model["c_array"]["source"], "model.c_array.source"),
                      (man["golden"]["file"], "golden.file")):
        _member(run, root, man, rel, name)
    checks = man["golden"]["checks"]
    for i, c in enumerate(checks):
        where = f"golden.checks[{i}]"
        if not isinstance(c, dict):
            run.fail(mpath, "manifest", f"{where}: expected a table, got {type(c).__name__}")
        _field(run, mpath, c, "name", str, where)
        if c.get("not_run") is not None:
            _field(run, mpath, c, "not_run", str, where)
            continue
        runtime = _field(run, mpath, c, "runtime", str, where)
        if runtime not in _CHECK_FIELDS:
            run.fail(mpath, "manifest", f"{where}.runtime: expected one of {tuple(_CHECK_FIELDS)}, got {runtime!r}")
        for dotted, kind in _CHECK_FIELDS[runtime]:
            _field(run, mpath, c, dotted, kind, where)
        if runtime == "tflite_micro":
            _field(run, mpath, man, "tflm.arena_bytes", int)
        _member(run, root, man, c["model"], f"{where}.model")
    run.ok("manifest", f"{len(checks)} golden checks; every file it names is inside the bundle and listed")


def _bundle_files(root: Path) -> list[str]:
    """Every file (and symlink) under `root`, relative, without following symlinked folders."""
    out = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        base = Path(folder)
        names = files + [d for d in dirs if (base / d).is_symlink()]
        out += [(base / n).relative_to(root).as_posix() for n in names]
    return sorted(out)


def _check_files(run: _Run, root: Path, man: dict[str, Any]) -> None:
    files = man["files"]
    if not files:
        run.fail(root / MANIFEST, "checksums", "files: empty; expected the sha256 of every file of the bundle")
    for rel, want in files.items():
        try:
            f = inside(root, rel, "files")
        except ArtifactError as exc:
            run.fail(root / MANIFEST, "checksums", str(exc))
        if not f.is_file():
            run.fail(root / rel, "checksums", "listed in manifest.json files but not found")
        got = sha256_of(f)
        if got != want:
            run.fail(root / rel, "checksums", f"sha256 {got} differs from the manifest's {want}: the file changed")
    extra = [rel for rel in _bundle_files(root) if rel not in files and rel not in SEALS]
    if extra:  # build outputs too: a planted firmware/build/ image is what `make run` would flash
        built = any(rel.startswith("firmware/build/") for rel in extra)
        run.fail(root, "checksums", f"{', '.join(extra[:10])}{' ...' if len(extra) > 10 else ''}: not in the "
                                    "manifest's files table; a bundle holds only the files it was packaged with"
                                    + ("; verify a fresh copy, or `rm -rf firmware/build` first" if built else ""))
    run.ok("checksums", f"{len(files)} files match manifest.json, no other file in the bundle")


def _check_c_array(run: _Run, root: Path, man: dict[str, Any]) -> None:
    model = man["model"]
    c = model["c_array"]
    src, mfile = root / c["source"], root / model["file"]
    try:
        name, data, length = parse_c_array(src.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        run.fail(src, "C array", f"expected an xxd -i style C array ({exc})")
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
        manifest = Manifest.from_dict({**man["source_artifact"], "model_file": model.name, "sha256": sha256_of(model)})
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


def _load_golden(run: _Run, gfile: Path) -> dict[str, np.ndarray]:
    """golden.npz's arrays, loaded without pickle (a re-sealed archive may hold object arrays)."""
    try:
        z = np.load(gfile, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        run.fail(gfile, "golden", f"expected an .npz archive of numeric arrays ({exc})")
    if not isinstance(z, np.lib.npyio.NpzFile):
        run.fail(gfile, "golden", "expected an .npz archive of numeric arrays, got a single .npy array")
    arrays = {}
    with z:
        for k in z.files:
            try:
                arrays[k] = z[k]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                run.fail(gfile, "golden", f"array {k!r}: expected a numeric array ({exc})")
    return arrays


def _array(run: _Run, gfile: Path, arrays: dict[str, np.ndarray], key: str, name: str, where: str) -> np.ndarray:
    """The golden array `key` (named by manifest field `where`): present and of integers, else fail."""
    if key not in arrays:
        run.fail(gfile, name, f"array {key!r} ({where}) not in {gfile.name}; it holds {', '.join(sorted(arrays))}")
    a = arrays[key]
    if a.dtype.kind not in "iu":
        run.fail(gfile, name, f"array {key!r} ({where}): expected integer (int8) tensors, got {a.dtype}")
    return a


def _check_golden(run: _Run, root: Path, man: dict[str, Any]) -> dict[str, np.ndarray]:
    g = man["golden"]
    gfile = root / g["file"]
    arrays = _load_golden(run, gfile)
    for i, c in enumerate(g["checks"]):
        name, where = f"golden: {c['name']}", f"golden.checks[{i}]"
        if c.get("not_run"):
            run.skip(name, c["not_run"])
            continue
        model = inside(root, c["model"], f"{where}.model")  # checked by _check_layout
        if c["runtime"] == "executorch":
            _golden_bpte(run, name, model, c)
            continue
        x = _array(run, gfile, arrays, c["input"], name, f"{where}.input")
        want = _array(run, gfile, arrays, c["expected"], name, f"{where}.expected")
        try:
            got = golden_run(root, man, c["model"], c["runtime"], x)
        except MissingExtraError as exc:
            run.skip(name, _not_here(c["runtime"], exc))
            continue
        except EcgEdgeError as exc:  # a model no runtime opens, golden inputs of the wrong shape
            run.fail(model, name, str(exc).removeprefix(f"{model}: "))
        diff = int(np.abs(got.astype(np.int32) - want.astype(np.int32)).max()) if got.shape == want.shape else None
        if diff is None or diff > c["tolerance"]:
            what = f"shape {got.shape} vs {want.shape}" if diff is None else f"max difference {diff} steps"
            run.fail(gfile, name, f"{c['model']} on {c['runtime']} gives outputs {what} from {c['expected']} "
                                  f"(tolerance {c['tolerance']} steps)")
        run.ok(name, f"{len(x)} windows, max difference {diff} steps (tolerance {c['tolerance']})")
    return arrays


def _not_here(runtime: str, exc: MissingExtraError) -> str:
    """A golden check's row when its runtime is not installed: tflite-micro has no Arm wheel, so on a
    Raspberry Pi the TFLite Micro check cannot run at all and says why, without failing verify."""
    if runtime == "tflite_micro":
        return unavailable("tflite-micro", "pip install tflite-micro")
    return f"not run: {exc}"


def _check_firmware(run: _Run, root: Path, man: dict[str, Any], arrays: dict[str, np.ndarray],
                    tflm: str | Path | None) -> None:
    """Build and run firmware/ (module docstring, step 7); one check row with the measured figures."""
    from firmware_bridge.bundle import firmware as fw

    name = f"firmware: {fw.BOARD}"
    if man.get("target") not in TFLM_TARGETS or not (man.get("firmware") or {}).get("folder"):
        run.fail(root / MANIFEST, name, f"target {man.get('target')!r} has no firmware project; package the int8 "
                                        f".tflite with --target {' or '.join(TFLM_TARGETS)}")
    gfile = root / man["golden"]["file"]
    x_q = _array(run, gfile, arrays, "x_q", name, "golden.npz")
    reference = _array(run, gfile, arrays, "expected_tflite_micro", name, "golden.npz")
    ref_name = "golden.npz expected_tflite_micro (recorded at packaging)"
    try:
        reference = golden_run(root, man, "model.tflite", "tflite_micro", x_q)
        ref_name = "the Python tflite-micro interpreter"
    except MissingExtraError:
        pass  # tflite-micro is not installed here: compare with what it gave at packaging
    t = man["output"]["tensor"]
    try:
        r = fw.check_firmware(root, x_q=x_q, reference=reference, reference_name=ref_name,
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
