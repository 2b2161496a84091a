"""Library export (distill.export) and parity (distill.parity) on a tiny trained student.

One tiny student (the registry's test_student) is trained for a few seconds on seeded synthetic windows through the real signal
contract and exported once per module to every kind; parity is measured on windows from other
records of the generator than training and calibration, through the real runtime backends.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from edge_runtime.artifact import Manifest, load_artifact
from edge_runtime.backends import open_backend
from edge_runtime.errors import ArtifactError, ConfigError, SamplingRateError

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is needed to export test models")
pytest.importorskip("executorch", reason="the 'export' extra is needed")
pytest.importorskip("litert_torch", reason="the 'export' extra is needed")
pytest.importorskip("onnxruntime", reason="the 'export' extra is needed")
import tiny_export as tx  # noqa: E402
from distill import export as ex  # noqa: E402
from distill.parity import FP32_TOLERANCE, check_parity, int8_steps, requantizations  # noqa: E402

THRESHOLDS = (0.5, 0.3, 0.4, 0.6, 0.35)
PROVENANCE = {"teacher_sha256": "ab" * 32, "student_sha256": "cd" * 32, "data_sha256": "ef" * 32,
              "calibration": "60 preprocessed synthetic lead-I windows (seed 2)"}
SPEC = ex.ExportSpec(tx.CONFIG, tx.LEADS, tx.LABELS, thresholds=THRESHOLDS, fs_device=tx.FS_DEVICE,
                     provenance=PROVENANCE)
KINDS = ("pte_fp32", "pte_int8", "bpte_fp32", "bpte_int8", "tflite_fp32", "tflite_int8", "onnx_fp32")


class Built:
    """The trained student, its windows, and each artifact exported on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        x_train, y_train = tx.synthetic_windows(40, seed=1)
        self.calib, _ = tx.synthetic_windows(12, seed=2)
        self.x, _ = tx.synthetic_windows(60, seed=3)  # 300 windows: int8 near-tie flips stay rare
        self.golden = self.x[::75]  # 4 golden windows for the bundled programs
        self.model = tx.train_tiny(x_train, y_train)
        self._done: dict[str, ex.Exported] = {}
        self._other: Any = None

    @property
    def other(self) -> Any:
        """A student trained on other records with another seed: other weights, other decisions."""
        if self._other is None:
            self._other = tx.train_tiny(*tx.synthetic_windows(8, seed=9), steps=30, seed=5)
        return self._other

    def get(self, kind: str) -> ex.Exported:
        if kind not in self._done:
            d, c = self.root / kind, self.calib
            make: dict[str, Callable[[], ex.Exported]] = {
                "pte_fp32": lambda: ex.export_pte(self.model, SPEC, d),
                "pte_int8": lambda: ex.export_pte(self.model, SPEC, d, "int8", c),
                "bpte_fp32": lambda: ex.export_bpte(self.model, SPEC, d, self.golden),
                # from the int8 reference of pte_int8: the same program, now with golden cases
                "bpte_int8": lambda: ex.export_bpte(self.get("pte_int8").reference, SPEC, d, self.golden, "int8"),
                "tflite_fp32": lambda: ex.export_tflite(self.model, SPEC, d),
                "tflite_int8": lambda: ex.export_tflite(self.model, SPEC, d, "int8", c),
                "onnx_fp32": lambda: ex.export_onnx(self.model, SPEC, d),
                "other_onnx_fp32": lambda: ex.export_onnx(self.other, SPEC, d),
                "other_pte_int8": lambda: ex.export_pte(self.other, SPEC, d, "int8", c),
            }
            with tx.one_thread():
                self._done[kind] = make[kind]()
        return self._done[kind]


# The tests that use `built` are slow: it trains the student again and exports every kind with its
# own spec (half a minute on 2 cores); the fast tier's exports are the session's `exports` (conftest).
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    with tx.one_thread():
        return Built(tmp_path_factory.mktemp("export"))


def _copy(built: Built, kind: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built.get(kind).manifest.parent, tmp_path / kind))


def _replace_model(folder: Path, data: bytes) -> Path:
    """Write another model file into an artifact and fix its sha256, so that loading succeeds."""
    manifest = folder / "manifest.json"
    meta = json.loads(manifest.read_text())
    (folder / meta["model_file"]).write_bytes(data)
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    manifest.write_text(json.dumps(meta))
    return manifest


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_loads_and_matches_its_reference(built: Built, kind: str, record_property: Any) -> None:
    exp = built.get(kind)
    m = load_artifact(exp.manifest).manifest
    with tx.one_thread():
        rep = check_parity(exp.manifest, exp.reference, built.x)
    for key in ("max_abs_diff", "agreement", "agreement_clear", "n_clear", "tolerance"):
        record_property(key, rep[key])
    print(f"\n{kind}: max |diff| {rep['max_abs_diff']:.3g} (tolerance {rep['tolerance']:.3g}), agreement "
          f"{rep['agreement']:.3f}, on clear windows {rep['agreement_clear']:.3f} ({rep['n_clear']}/{rep['n']})")
    assert rep["passed"] and rep["n"] == len(built.x) == 300
    assert rep["max_abs_diff"] <= rep["tolerance"] and rep["agreement_clear"] == 1.0
    if m.precision == "fp32":
        assert rep["tolerance"] == FP32_TOLERANCE and rep["output_step"] is None and rep["agreement"] == 1.0
    else:
        # the int8 tolerance is a few output steps, far below the logits' range
        layers = sum(isinstance(mod, (torch.nn.Conv2d, torch.nn.AvgPool2d, torch.nn.Linear)) for mod in built.model.modules())
        assert requantizations(exp.reference) == 1 + layers  # the input, then each conv, the pool and the linear
        assert rep["tolerance"] == pytest.approx(int8_steps(exp.reference) * rep["output_step"], rel=2e-3)
        assert rep["agreement"] >= 0.97 and rep["n_clear"] >= 0.5 * rep["n"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_manifest_round_trips_and_carries_the_spec(built: Built, kind: str) -> None:
    path = built.get(kind).manifest
    m = load_artifact(path).manifest
    assert Manifest.from_dict(m.to_dict()) == m
    assert json.loads(path.read_text()) == m.to_dict()
    assert m.labels == tx.LABELS and m.thresholds == THRESHOLDS and m.multilabel is False
    assert m.spec == tx.CONFIG.spec(tx.LEADS) and m.preprocess == tx.CONFIG
    assert m.filter_design == tx.CONFIG.design(tx.FS_DEVICE).to_dict()
    assert PROVENANCE.items() <= m.provenance.items() and m.provenance["export"]
    assert m.versions["torch"] and m.versions["ecg_edge"]
    if m.precision == "int8" and kind != "bpte_int8":
        assert m.provenance["calibration_windows"] == len(built.calib)
        assert m.provenance["calibration_sha256"] == hashlib.sha256(built.calib.tobytes()).hexdigest()


@pytest.mark.slow
def test_int8_tflite_manifest_has_the_model_files_int8_io(built: Built) -> None:
    m = load_artifact(built.get("tflite_int8").manifest).manifest
    for t in (m.input, m.output):
        assert t.dtype == "int8" and t.scale > 0 and -128 <= t.zero_point <= 127
    assert m.input.shape == (1, 1, 1, 1000) and m.output.shape == (1, 5)
    backend = open_backend(built.get("tflite_int8").manifest)  # refuses a scale / zero point that differs
    detail = backend.interpreter.get_input_details()[0]
    assert detail["quantization"] == (pytest.approx(m.input.scale, rel=1e-6), m.input.zero_point)
    pte = load_artifact(built.get("pte_int8").manifest).manifest
    assert pte.input.dtype == pte.output.dtype == "float32"  # XNNPACK int8 keeps float I/O


@pytest.mark.slow
def test_bpte_verifies_its_golden_outputs(built: Built) -> None:
    for kind in ("bpte_fp32", "bpte_int8"):
        folder = built.get(kind).manifest.parent
        m = load_artifact(folder).manifest
        bundle = m.provenance["bundled_program"]
        bpte = folder / bundle["file"]
        assert hashlib.sha256(bpte.read_bytes()).hexdigest() == bundle["sha256"]
        assert bundle["test_cases"] == len(built.golden) and bundle["device_atol"] > 0
        assert ex.verify_bpte(bpte, pte=folder / m.model_file) == len(built.golden)
    # the int8 bundle was made from pte_int8's reference: the very same .pte
    assert load_artifact(built.get("bpte_int8").manifest).manifest.sha256 == \
        load_artifact(built.get("pte_int8").manifest).manifest.sha256


@pytest.mark.slow
def test_bpte_with_a_modified_expected_output_fails(built: Built, tmp_path: Path) -> None:
    folder = built.get("bpte_int8").manifest.parent
    data = (folder / "model.bpte").read_bytes()
    expected = open_backend(built.get("bpte_int8").manifest).run(built.golden[2:3])  # golden case 2
    assert data.count(expected.tobytes()) == 1
    changed = expected.copy()
    changed[0, 1] += 0.5
    bad = tmp_path / "model.bpte"
    bad.write_bytes(data.replace(expected.tobytes(), changed.tobytes()))
    with pytest.raises(ArtifactError) as err:
        ex.verify_bpte(bad)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: bundled test case 2 failed verification") and "\n" not in msg
    with pytest.raises(ArtifactError, match="the bundled program is not the .pte"):
        ex.verify_bpte(data, pte=built.get("pte_fp32").manifest.parent / "model.pte")


@pytest.mark.slow
def test_parity_fails_on_a_model_file_from_other_weights(built: Built, tmp_path: Path) -> None:
    other = tx.tiny_student()
    other.load_state_dict(built.model.state_dict())
    with torch.no_grad():
        other.head[-1].bias.add_(0.5 * torch.tensor([1.0, -1.0, 0.0, 0.0, 0.0]))  # nudge the head only
    with tx.one_thread():
        foreign = ex.export_onnx(other, SPEC, tmp_path / "other")
    manifest = _replace_model(_copy(built, "onnx_fp32", tmp_path), (foreign.manifest.parent / "model.onnx").read_bytes())
    load_artifact(manifest)  # sha256 fixed: the artifact loads
    exp = built.get("onnx_fp32")
    with pytest.raises(ArtifactError) as err:
        check_parity(manifest, exp.reference, built.x)
    msg = str(err.value)
    model_path = str(manifest.parent.resolve() / "model.onnx")
    assert msg.startswith(f"{model_path}: parity check failed on 300 windows: max |output - reference| 0.5") \
        and "\n" not in msg, msg
    rep = check_parity(manifest, exp.reference, built.x, raise_on_failure=False)
    assert not rep["passed"] and rep["max_abs_diff"] == pytest.approx(0.5, abs=1e-4)
    # the int8 program under the fp32 manifest: loads and runs (same float I/O), fails parity
    manifest = _replace_model(_copy(built, "pte_fp32", tmp_path),
                              (built.get("pte_int8").manifest.parent / "model.pte").read_bytes())
    with pytest.raises(ArtifactError, match=r"model\.pte: parity check failed .* > tolerance 0\.0001"):
        check_parity(manifest, built.get("pte_fp32").reference, built.x)
    # int8 from other weights under the int8 manifest: the int8 tolerance (a few steps) still catches it
    manifest = _replace_model(_copy(built, "pte_int8", tmp_path),
                              (built.get("other_pte_int8").manifest.parent / "model.pte").read_bytes())
    rep = check_parity(manifest, built.get("pte_int8").reference, built.x, raise_on_failure=False)
    assert not rep["passed"] and rep["max_abs_diff"] > 3 * rep["tolerance"], rep


@pytest.mark.slow
def test_decision_check_catches_what_a_loose_tolerance_lets_through(built: Built, tmp_path: Path) -> None:
    exp, foreign = built.get("onnx_fp32"), built.get("other_onnx_fp32")
    manifest = _replace_model(_copy(built, "onnx_fp32", tmp_path), (foreign.manifest.parent / "model.onnx").read_bytes())
    with pytest.raises(ArtifactError, match=r"parity check failed on 300 windows: decision agreement 0\.\d+ < 0\.99"):
        check_parity(manifest, exp.reference, built.x, tolerance=1e6)


@pytest.mark.slow
def test_flipped_byte_without_a_fixed_sha256_fails_at_load(built: Built, tmp_path: Path) -> None:
    for kind in ("tflite_int8", "pte_int8"):
        folder = _copy(built, kind, tmp_path)
        model = folder / load_artifact(folder).manifest.model_file
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0x01
        model.write_bytes(bytes(data))
        with pytest.raises(ArtifactError) as err:
            check_parity(folder, built.get(kind).reference, built.x)
        msg = str(err.value)
        assert msg.startswith(f"{model.resolve()}: sha256 mismatch") and "\n" not in msg


@pytest.mark.slow
def test_multilabel_parity_uses_the_manifest_thresholds(built: Built, tmp_path: Path) -> None:
    spec = dataclasses.replace(SPEC, multilabel=True)
    with tx.one_thread():
        exp = ex.export_onnx(built.model, spec, tmp_path / "ml")
        rep = check_parity(exp.manifest, exp.reference, built.x)
    assert load_artifact(exp.manifest).manifest.multilabel and rep["passed"] and rep["agreement"] == 1.0
    # a bias shift of 0.3 moves some sigmoid decisions across their thresholds: caught as disagreement
    other = tx.tiny_student()
    other.load_state_dict(built.model.state_dict())
    with torch.no_grad():
        other.head[-1].bias.add_(0.3)
    rep = check_parity(exp.manifest, other, built.x, tolerance=1.0, raise_on_failure=False)
    assert rep["max_abs_diff"] == pytest.approx(0.3, abs=1e-4) and rep["agreement"] < 1.0


@pytest.mark.slow
def test_int8_export_refuses_missing_or_bad_calibration(built: Built, tmp_path: Path) -> None:
    for export in (ex.export_pte, ex.export_tflite):
        with pytest.raises(ConfigError, match=r"^calib: int8 export needs real preprocessed calibration windows"):
            export(built.model, SPEC, tmp_path / "x", "int8", None)
        with pytest.raises(ConfigError, match=r"^calib: expected float windows \(n, 1, 1, 1000\)"):
            export(built.model, SPEC, tmp_path / "x", "int8", built.calib[:, :, 0, :])
        with pytest.raises(ConfigError, match=r"^precision: expected one of \('fp32', 'int8'\), got 'int4'"):
            export(built.model, SPEC, tmp_path / "x", "int4", built.calib)
    with pytest.raises(ConfigError, match=r"^calib: int8 export needs"):
        ex.export_bpte(built.model, SPEC, tmp_path / "x", built.golden, "int8")
    with pytest.raises(ConfigError, match=r"^calib: expected finite values"):
        ex.export_pte(built.model, SPEC, tmp_path / "x", "int8", np.full_like(built.calib, np.nan))
    assert not (tmp_path / "x").exists()


def test_export_spec_and_model_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"^thresholds: expected 5 probabilities"):
        dataclasses.replace(SPEC, thresholds=(0.5,))
    with pytest.raises(ConfigError, match=r"^labels: expected distinct"):
        dataclasses.replace(SPEC, labels=("a", "a"))
    with pytest.raises(SamplingRateError, match="^fs_device: expected a sampling rate"):
        dataclasses.replace(SPEC, fs_device=-1.0)
    with pytest.raises(SamplingRateError, match="notch_hz"):  # a 50 Hz notch cannot run at 90 Hz
        dataclasses.replace(SPEC, preprocess=dataclasses.replace(tx.CONFIG, notch_hz=50), fs_device=90.0)
    with pytest.raises(ConfigError, match=r"^n_classes: the model has 3, the export spec implies 5"):
        ex.prepare_model(tx.tiny_student(n_labels=3), SPEC)
    with pytest.raises(ConfigError, match=r"^model: expected \(1, 5\) logits"):  # a model that says nothing of itself
        ex.prepare_model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1000, 3)), SPEC)
    with pytest.raises(ConfigError, match=r"^leads: the model takes"):
        ex.prepare_model(tx.tiny_student(leads=("II",)), SPEC)


def test_the_export_spec_carries_abstain_bands_into_the_manifest(tmp_path: Path) -> None:
    """ExportSpec.abstain is validated (one line naming the field) and written by `_write`, the one
    manifest writer every exporter and `write_model_artifact` (Brevitas's) go through."""
    with pytest.raises(ConfigError, match=r"^abstain: expected 5 finite margins >= 0 in logit units"):
        dataclasses.replace(SPEC, abstain=(0.1, -1.0, 0.0, 0.0, 0.0))
    with pytest.raises(ConfigError, match=r"^abstain: expected 5 finite margins"):
        dataclasses.replace(SPEC, abstain=(0.1,))
    bands = (0.1, 0.2, 0.0, 0.4, 1.5)
    banded = dataclasses.replace(SPEC, abstain=list(bands))
    assert SPEC.abstain is None and banded.abstain == bands
    onnx = ex.export_onnx(tx.tiny_student(), banded, tmp_path / "onnx").manifest
    assert load_artifact(onnx).manifest.abstain == bands and json.loads(onnx.read_text())["abstain"] == list(bands)
    other = ex.write_model_artifact(b"model bytes made elsewhere", banded, tmp_path / "other", runtime="onnxruntime",
                                    precision="int8", input=ex.TensorSpec("x", (-1, 1, 1, tx.WINDOW)),
                                    output=ex.TensorSpec("logits", (-1, 5)), provenance={})
    assert load_artifact(other).manifest.abstain == bands
    plain = ex.export_onnx(tx.tiny_student(), SPEC, tmp_path / "plain").manifest
    assert "abstain" not in json.loads(plain.read_text()) and load_artifact(plain).manifest.abstain is None


class _WithBN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(1, 4, (1, 5), (1, 10)), torch.nn.BatchNorm2d(4),
                                        torch.nn.Flatten(), torch.nn.Linear(4 * 100, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_batchnorm_is_folded_with_the_students_fuser() -> None:
    model = _WithBN()
    with torch.no_grad():  # non-trivial statistics, so a fold that dropped them would show
        model.body[1].running_mean.uniform_(-0.5, 0.5)
        model.body[1].running_var.uniform_(0.5, 2.0)
    model.train()
    fused = ex.prepare_model(model, SPEC)
    assert isinstance(fused.body[1], torch.nn.Identity) and not fused.training
    assert isinstance(model.body[1], torch.nn.BatchNorm2d) and model.training  # the caller's model untouched
    x = torch.randn(4, *SPEC.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model.eval()(x), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- one manifest write, one decision rule

@pytest.mark.slow
def test_a_compilers_provenance_joins_the_one_manifest_write(built: Built, tmp_path: Path) -> None:
    """`compiler` (Vela in a release) runs on the model file in place before the manifest is
    written: the manifest is the plain export's plus what the compiler reported, the model the same."""
    seen: list[Path] = []

    def compiler(model_file: Path) -> dict[str, Any]:
        assert not (model_file.parent / "manifest.json").exists()  # not written yet
        seen.append(model_file)
        return {"ethos_u": {"model_bytes": model_file.stat().st_size}}

    with tx.one_thread():
        plain = ex.export_tflite(built.model, SPEC, tmp_path / "plain")
        compiled = ex.export_tflite(built.model, SPEC, tmp_path / "compiled", compiler=compiler)
        bpte = ex.export_bpte(built.get("pte_int8").reference, SPEC, tmp_path / "bpte", built.golden, "int8",
                              provenance={"cortex_m": {"path": "cortex-m55.pte"}})
    a, b = (json.loads(e.manifest.read_text()) for e in (plain, compiled))
    assert seen == [compiled.manifest.parent / "model.tflite"]
    assert b["provenance"] == {**a["provenance"], "ethos_u": {"model_bytes": seen[0].stat().st_size}}
    assert {k: v for k, v in b.items() if k != "provenance"} == {k: v for k, v in a.items() if k != "provenance"}
    ref = json.loads(built.get("bpte_int8").manifest.read_text())
    got = json.loads(bpte.manifest.read_text())
    assert got["provenance"] == {**ref["provenance"], "cortex_m": {"path": "cortex-m55.pte"}}
    assert got["sha256"] == ref["sha256"]


def _calls(tree: Any, attr: str) -> list[Any]:
    import ast

    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == attr]


def test_manifests_are_written_only_through_write_artifact() -> None:
    """No raw JSON rewrite of a manifest in distill/: the one writer is edge_runtime.artifact.write_artifact,
    called from distill.export's `_write` only."""
    import ast

    repo = Path(__file__).resolve().parents[1]
    writers = []
    for path in sorted((repo / "distill").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            if any(isinstance(c.func, ast.Name) and c.func.id == "write_artifact" for c in ast.walk(fn)
                   if isinstance(c, ast.Call)):
                writers.append(f"{path.name}:{fn.name}")
        dumped = [c for attr in ("write_text", "write_bytes") for c in _calls(tree, attr)
                  if "json.dump" in ast.unparse(c)]
        assert not dumped and not _calls(tree, "dump"), f"{path.name}: writes JSON itself"
    assert writers == ["export.py:_write"]


def test_the_decision_rule_is_written_once() -> None:
    """argmax(p / t) and p >= t live in edge_runtime.backends.decide only: no other code divides by
    thresholds or compares with them (the cut-offs allowed are no label decisions)."""
    import ast
    import re

    repo = Path(__file__).resolve().parents[1]
    allowed = {"train/objectives/losses.py": {"sim >= threshold"},  # fgclep's soft-target similarity cut-off
               "edge_runtime/beats.py": {"c.height > self.thresh", "self.sb.height > self.thresh / 2"}}  # QRS detector
    named = re.compile(r"thresh|\bthr\b|\bth\b")
    found = []
    for pkg in ("train", "distill", "ecg_edge", "edge_runtime", "bench", "firmware_bridge"):
        for path in sorted((repo / pkg).rglob("*.py")):
            rel = str(path.relative_to(repo))
            if rel == "edge_runtime/backends.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                    right = [node.right]
                elif isinstance(node, ast.Compare) and any(isinstance(o, (ast.GtE, ast.Gt)) for o in node.ops):
                    right = node.comparators
                else:
                    continue
                src = ast.unparse(node)
                if any(named.search(ast.unparse(r)) for r in right) and src not in allowed.get(rel, ()):
                    found.append(f"{rel}:{node.lineno}: {src}")
    assert not found, found
