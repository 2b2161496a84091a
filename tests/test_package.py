"""Vendor bundles: `ecg-edge package` for every target on a real (tiny) int8 export, and
`ecg-edge verify` catching tampering, a wrong key and a wrong golden output."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

for _module in ("executorch", "litert_torch", "tflite_micro", "cryptography", "ethosu"):
    pytest.importorskip(_module, reason=f"the 'export' extra ({_module}) makes and checks the vendor bundles")
torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is needed to export the student")

from ecg_edge.cli import main  # noqa: E402
from firmware_bridge.bundle import TARGETS, BundleError, parse_c_array, render_c_array, verify_bundle  # noqa: E402
from firmware_bridge.bundle.readme import memory_lines  # noqa: E402

pytestmark = pytest.mark.slow  # every test packages conftest.student_export (Vela, Cortex-M lowering)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("keys")
    assert main(["keygen", "--out", str(out / "good")]) == 0
    assert main(["keygen", "--out", str(out / "other")]) == 0
    return {"priv": out / "good" / "signing_key.pem", "pub": out / "good" / "signing_key.pub.pem",
            "wrong_pub": out / "other" / "signing_key.pub.pem"}


@pytest.fixture(scope="module")
def bundles(student_export: Path, keys: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("bundles")
    made = {}
    for target in TARGETS:
        folder = "pte-int8" if target in ("xnnpack", "cortex-m") else "tflite-int8"
        extra = ["--sign", str(keys["priv"])] if target == "tflm" else []
        with_one_thread = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            rc = main(["package", "--artifact", str(student_export / folder), "--target", target,
                       "--out", str(out / target), *extra])
        finally:
            torch.set_num_threads(with_one_thread)
        assert rc == 0
        made[target] = out / target
    return made


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / bundle.name))


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_packages_and_verifies(bundles: dict[str, Path], target: str) -> None:
    report = verify_bundle(bundles[target])
    man = _manifest(bundles[target])
    names = {c.name: c.status for c in report.checks}
    assert report.ok and names["checksums"] == "ok" and names["C array"] == "ok"
    assert set(man["files"]) == {str(p.relative_to(bundles[target])) for p in bundles[target].rglob("*")
                                 if p.is_file() and not p.name.startswith("manifest.json")}
    assert man["input"]["lead"] == "I" and man["input"]["tensor"]["dtype"] in ("int8", "float32")
    if target == "cortex-m":  # no host runtime for CMSIS-NN: visible, not silent
        assert names["golden: cortex_m"] == "not run"
        assert man["input"]["tensor"]["dtype"] == "int8"
    elif target == "xnnpack":
        assert names["golden: executorch_bpte"] == "ok"
    else:
        assert names["golden: tflite_micro"] == "ok" and names["golden: litert"] == "ok"


def test_c_array_holds_the_model_bytes(bundles: dict[str, Path]) -> None:
    for target, b in bundles.items():
        man = _manifest(b)
        name, data, length = parse_c_array((b / "model_data.c").read_text())
        model = (b / man["model"]["file"]).read_bytes()
        assert data == model and length == len(model) == man["model"]["bytes"] and name == "ecg_model", target
        assert "extern const unsigned char ecg_model[];" in (b / "model_data.h").read_text()
    h, c = render_c_array(bytes(range(20)), "9-bad name", "m.tflite")
    assert parse_c_array(c) == ("m_9_bad_name", bytes(range(20)), 20)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler")
def test_c_array_compiles_aligned(bundles: dict[str, Path], tmp_path: Path) -> None:
    b = bundles["tflm"]
    main_c = tmp_path / "main.c"
    main_c.write_text('#include <stdio.h>\n#include <stdint.h>\n#include "model_data.h"\n'
                      'int main(void){printf("%u %d %u\\n", ecg_model_len, (int)((uintptr_t)ecg_model % 16),'
                      ' (unsigned)ecg_model[7]); return 0;}\n')
    exe = tmp_path / "a.out"
    subprocess.run(["gcc", "-std=c11", "-I", str(b), str(main_c), str(b / "model_data.c"), "-o", str(exe)], check=True)
    model = (b / "model.tflite").read_bytes()
    assert subprocess.run([str(exe)], capture_output=True, text=True).stdout.split() == [str(len(model)), "0",
                                                                                       str(model[7])]


def test_tflm_arena_measured_and_reported(bundles: dict[str, Path]) -> None:
    man = _manifest(bundles["tflm"])
    t = man["tflm"]
    assert 0 < t["arena_measured_bytes"] <= t["arena_bytes"] == man["firmware"]["arena_bytes"] <= 64 * 1024
    measured = man["firmware"]["measured"]  # the Arm toolchain present: RAM measured on the board
    assert man["memory"]["ram_bytes"] == (measured["memory"]["ram_bytes"] if measured else t["arena_bytes"])
    assert t["arena_bytes"] % 1024 == 0 and "CONV_2D" in t["operators"] and "AddConv2D" in t["resolver"]
    assert "AddConv2D()" in (bundles["tflm"] / "model_ops.h").read_text()
    assert f"{t['arena_measured_bytes']} bytes" in (bundles["tflm"] / "README.md").read_text()


def test_ethos_u55_places_every_operator_on_the_npu(bundles: dict[str, Path]) -> None:
    man = _manifest(bundles["ethos-u55-128"])
    v = man["ethos_u"]
    assert v["npu_op_share"] == 1.0 and v["cpu_ops"] == 0 and v["cycles_total"] > 0 and v["inference_time_s"] > 0
    assert man["tflm"]["resolver"] == ["AddEthosU"]  # the compiled model is one ethos-u custom operator
    assert "model.tflite" in man["golden"]["host_model"]  # the golden check runs the input model, and says so
    assert (bundles["ethos-u55-128"] / v["summary_csv"]).is_file()


def test_readme_states_the_measured_flash_and_ram(bundles: dict[str, Path]) -> None:
    for target, b in bundles.items():
        man, readme = _manifest(b), (b / "README.md").read_text()
        assert f"Flash: {man['memory']['flash_bytes']} bytes" in readme, target
        assert f"RAM: {man['memory']['ram_bytes']} bytes" in readme, target
        assert all(line in readme for line in memory_lines(man))


def test_signature_right_key_passes_wrong_key_fails(bundles: dict[str, Path], keys: dict[str, Path],
                                                     capsys: pytest.CaptureFixture) -> None:
    b = bundles["tflm"]
    assert oct(keys["priv"].stat().st_mode & 0o777) == "0o600"
    report = verify_bundle(b, pubkey=keys["pub"])
    assert [c.status for c in report.checks if c.name == "signature"] == ["ok"]
    with pytest.raises(BundleError, match=r"manifest\.json: signature check failed"):
        verify_bundle(b, pubkey=keys["wrong_pub"])
    assert main(["verify", str(b), "--pubkey", str(keys["wrong_pub"])]) == 2
    assert "signature" in capsys.readouterr().err
    with pytest.raises(BundleError, match="signature check failed: not found"):
        verify_bundle(bundles["ethos-u55-128"], pubkey=keys["pub"])  # an unsigned bundle


@pytest.mark.parametrize("file", ["model.tflite", "manifest.json", "model_data.c"])
def test_tampering_one_byte_fails_naming_the_file(bundles: dict[str, Path], keys: dict[str, Path], tmp_path: Path,
                                                  file: str) -> None:
    b = _copy(bundles["tflm"], tmp_path)
    f = b / file
    data = bytearray(f.read_bytes())
    i = len(data) // 2
    data[i] = (data[i] + 1) % 256 if file != "model_data.c" else data[i]
    if file == "model_data.c":  # change one byte value of the array, keeping it valid C
        text = f.read_text()
        j = text.index("0x", len(text) // 2)
        data = bytearray(text[:j] + ("0x00" if text[j:j + 4] != "0x00" else "0x01") + text[j + 4:], "utf-8")
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError) as err:
        verify_bundle(b, pubkey=keys["pub"])
    assert file in str(err.value)
    assert main(["verify", str(b)]) == 2  # without the key too


def test_wrong_golden_output_fails_naming_the_runtime(bundles: dict[str, Path], tmp_path: Path) -> None:
    import hashlib

    b = _copy(bundles["ethos-u55-128"], tmp_path)  # unsigned: re-seal the checksums after the edit
    with np.load(b / "golden.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["expected_tflite_micro"] = arrays["expected_tflite_micro"].copy()
    v = int(arrays["expected_tflite_micro"][0, 0])
    arrays["expected_tflite_micro"][0, 0] = v - 3 if v > -125 else v + 3
    np.savez(b / "golden.npz", **arrays)
    man = _manifest(b)
    man["files"]["golden.npz"] = hashlib.sha256((b / "golden.npz").read_bytes()).hexdigest()
    blob = (json.dumps(man, indent=2) + "\n").encode()
    (b / "manifest.json").write_bytes(blob)
    (b / "manifest.json.sha256").write_text(f"{hashlib.sha256(blob).hexdigest()}  manifest.json\n")
    with pytest.raises(BundleError, match=r"golden\.npz: golden: tflite_micro check failed: .*max difference 3"):
        verify_bundle(b)


def test_package_and_verify_run_without_torch(bundles: dict[str, Path], student_export: Path, tmp_path: Path) -> None:
    """The vendor side (a Raspberry Pi, a firmware engineer's machine) has no torch: block it, package a
    TFLite Micro bundle and verify bundles."""
    code = textwrap.dedent(f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {{'torch', 'train', 'distill', 'executorch'}}:
                    raise ImportError(f'{{name}} blocked for this test')
        sys.meta_path.insert(0, Block())
        from firmware_bridge.bundle import package, verify_bundle
        man = package({str(student_export / 'tflite-int8')!r}, 'tflm', {str(tmp_path / 'tflm')!r}, log=lambda s: None)
        print('packaged', man['target'], len(man['files']))
        for t in ('tflm', 'xnnpack'):
            r = verify_bundle({str(bundles['tflm'].parent)!r} + '/' + t)
            print(t, r.ok, [c.status for c in r.checks if c.name.startswith('golden')])
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("packaged tflm ") and (tmp_path / "tflm" / "manifest.json").is_file()
    assert lines[1] == "tflm True ['ok', 'ok']"
    assert lines[2] == "xnnpack True ['not run']"  # ExecuTorch absent: reported, not silent


def test_no_firmware_writes_a_tflm_bundle_without_its_firmware(student_export: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    """`--no-firmware` (a bundle flashed with the vendor's own firmware; bench/pi.py's): no firmware/,
    the manifest says why, verify passes; a cortex-m55 bundle is its firmware and refuses it."""
    from cli_errors import assert_one_error_line

    out = tmp_path / "tflm"
    assert main(["package", "--artifact", str(student_export / "tflite-int8"), "--target", "tflm",
                 "--out", str(out), "--no-firmware"]) == 0
    assert not (out / "firmware").exists()
    assert _manifest(out)["firmware"] == {"folder": None, "not_written": "not asked for (--no-firmware)"}
    assert verify_bundle(out).ok
    assert_one_error_line(["package", "--artifact", str(student_export / "tflite-int8"), "--target", "cortex-m55",
                           "--out", str(tmp_path / "m55"), "--no-firmware"], capsys, "--no-firmware", "cortex-m55")
    assert not (tmp_path / "m55").exists()
