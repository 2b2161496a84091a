"""The Raspberry Pi path on an emulated 64-bit Arm Debian (bench/pi.py).

The README's Raspberry Pi block runs verbatim in a Debian 12 arm64 root file system (debootstrap,
qemu-user-static): the `[edge]` install, `ecg-edge verify` of a signed bundle, the `[edge,replay]`
install, and `ecg-edge stream` of MIT-BIH record 100 and CinC 2017 record A00001 with int8 .tflite
students. The same stream lines run on x86 and the outputs must agree: window inputs within float32
rounding, R peaks identical, int8 outputs within the int8 tolerance, every decision identical on
the clear windows and the events identical wherever every decision is (bench/pi.py's docstring).

Needs root, debootstrap and qemu-user-static (.ci/run installs them) and network access to Debian
and PyPI the first time; skipped with the reason when they are missing, failed instead under CI=true.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}: CI must run the emulated Raspberry Pi test (.ci/run installs its packages)")
    pytest.skip(reason)


def test_readme_pi_block_on_emulated_arm64_matches_x86(mitdb_root: Path, cinc2017_root: Path,
                                                      tmp_path: Path) -> None:
    for mod in ("litert_torch", "tflite_micro"):
        pytest.importorskip(mod, reason="the 'export' extra makes the students and the bundle on x86")
    if os.geteuid() != 0:
        _missing("the emulated Pi needs root (debootstrap, chroot, mounts)")
    for tool, pkg in (("debootstrap", "debootstrap"), ("qemu-aarch64-static", "qemu-user-static")):
        if shutil.which(tool) is None:
            _missing(f"{tool} not found (apt-get install {pkg})")
    assert mitdb_root.parent == cinc2017_root.parent
    out = tmp_path / "pi.json"
    res = subprocess.run([sys.executable, "bench/pi.py", "--data", str(mitdb_root.parent), "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=2400)
    if res.returncode == 2 and "binfmt_misc" in res.stderr:
        _missing(res.stderr.strip())
    assert out.is_file(), res.stderr[-3000:]
    report = json.loads(out.read_text())
    failed = {k: v for k, v in report["checks"].items() if not v}
    assert not failed, json.dumps({"failed": failed, "streams": report["streams"], "installs": report["installs"]}, indent=1)
    assert res.returncode == 0
    sources = [s["command"].split("--source ")[1].split()[0] for s in report["streams"]]
    assert sources == ["replay:data/physionet2017/A00001", "replay:data/mitdb/100", "synthetic"]
    for s in report["streams"]:  # real signal went through both machines: windows, beats, decisions
        assert s["windows"] == s["windows_pi"] > 0 and s["beats"] > 0 and s["decisions"] > 0
        assert s["usable_windows_equal"] and s["max_abs_window_input_diff_mv"] <= 1e-5
    sizes = [report["installs"][v]["site_packages_mb"]
             for v in ("edge", "edge,replay", "edge,replay,synthetic", "edge,replay,synthetic,virtual")]
    assert sizes == sorted(sizes) and sizes[0] > 100
