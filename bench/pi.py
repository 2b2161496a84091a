"""The Raspberry Pi path on an emulated 64-bit Arm Debian, compared with x86; prints one JSON object.

    python bench/pi.py [--data ../shared/data] [--out FILE]        (or: ecg-edge bench pi ...)

1. **The emulated Pi**: a Debian 12 (bookworm) arm64 root file system, made once by
   `debootstrap --arch arm64 --variant=minbase` and cached outside the clone
   (`$ECG_EDGE_CACHE/pi/bookworm-arm64`, default `~/.cache/ecg-edge`). Its programs run on x86
   through `qemu-user-static` and binfmt_misc (registered here when it is not). Needs root
   (debootstrap, chroot, mounts) and network access to Debian's mirror and PyPI; pip's wheel cache
   stays in the root file system, so later runs download nothing.
2. **The README's Raspberry Pi block** (between `<!-- pi:begin -->` and `<!-- pi:end -->`) runs
   there line by line, verbatim, in a fresh virtual environment, in a copy of this checkout
   (tracked and unignored files) that holds `data/` (the PhysioNet records, bind-mounted read-only),
   `student/` and `student-mlii/` (int8 .tflite students) and `bundle/` (a signed TFLite Micro
   bundle) made on x86 first. Each line's exit status and time are recorded, and the size of
   site-packages after each `pip install`.
3. **Same results as x86**: every `ecg-edge stream` line of the block runs again on x86 with this
   interpreter, and their outputs are compared: window inputs (`--audit`) within float32 rounding,
   R peaks identical, int8 outputs within the int8 tolerance (`int8_tolerance_steps`, the depth rule
   of a bundle's LiteRT check: XNNPACK's x86 and Arm kernels round differently at each layer), every
   decision identical on the clear windows (`distill.parity.clear_windows`: those whose top two
   classes lie further apart than that tolerance; the raw agreement over all windows is reported
   too), and the events identical wherever every decision is.

Times measured here are of qemu's emulation on x86, not of a Raspberry Pi.

Without --artifacts, the students are the registry's tiny test_student (trained by `tests/tiny_export.py`, trained for a
few seconds on synthetic lead I and lead II windows; needs the train and export extras), enough to
compare two machines' arithmetic, not a clinical model.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from report import emit  # noqa: E402  (bench/report.py, beside this script)

REPO = Path(__file__).resolve().parents[1]
SUITE = "bookworm"
#: Debian packages of the emulated Pi beyond minbase: what a Raspberry Pi OS Lite image has.
PACKAGES = ("python3", "python3-venv", "ca-certificates")
MIRROR = "http://deb.debian.org/debian"
WORKDIR = "/root/ecg-edge"  # the checkout inside the emulated system
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GOAL_EDGE_MB = 250.0
#: The emulated core: a Raspberry Pi 4's (ARMv8-A with NEON; no dot product, no SVE) instead of
#: qemu's "max" core, so XNNPACK picks the kernels a Pi 4 runs. /sys is not mounted: with the x86
#: host's /sys visible, LiteRT segfaulted under emulation; without it, XNNPACK's cpuinfo says three
#: times that it cannot read the processor lists (a real Pi does not print this) and uses its defaults.
QEMU_CPU = "cortex-a72"


class PiError(RuntimeError):
    """The emulated system cannot be built or run here (the message says what is missing)."""


def cache_root() -> Path:
    return Path(os.environ.get("ECG_EDGE_CACHE", Path.home() / ".cache" / "ecg-edge")) / "pi"


def check_host() -> None:
    """Root, debootstrap, qemu-aarch64-static and a binfmt_misc entry for aarch64 (registered if missing)."""
    if os.geteuid() != 0:
        raise PiError("the emulated Pi needs root (debootstrap, chroot and mounts)")
    for tool, pkg in (("debootstrap", "debootstrap"), ("qemu-aarch64-static", "qemu-user-static"),
                      ("unshare", "util-linux"), ("chroot", "coreutils")):
        if shutil.which(tool) is None:
            raise PiError(f"{tool} not found: apt-get install {pkg}")
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], capture_output=True)
    if not (binfmt / "qemu-aarch64").exists() and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    entry = binfmt / "qemu-aarch64"
    if not entry.exists() or "enabled" not in entry.read_text():
        raise PiError(f"{entry}: no enabled binfmt_misc entry for aarch64 (apt-get install qemu-user-static "
                      "binfmt-support; update-binfmts --enable qemu-aarch64)")
    if "F" not in next((ln.split()[1] for ln in entry.read_text().splitlines() if ln.startswith("flags:")), ""):
        raise PiError(f"{entry}: the interpreter is not preloaded (flag F), so it cannot run inside a chroot")


def ensure_rootfs() -> tuple[Path, dict[str, Any]]:
    """The cached bookworm arm64 root file system; built by debootstrap when missing or different."""
    root = cache_root() / f"{SUITE}-arm64"
    stamp = root / ".ecg-edge-rootfs.json"
    want = {"suite": SUITE, "variant": "minbase", "include": list(PACKAGES), "mirror": MIRROR}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return root, {"cached": True, "path": str(root)}
    if root.exists():
        shutil.rmtree(root)
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = subprocess.run(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                          SUITE, str(partial), MIRROR], capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stdout + res.stderr).strip().splitlines()[-3:]
        raise PiError(f"debootstrap {SUITE} arm64 failed: {' | '.join(tail)}")
    partial.rename(root)
    stamp.write_text(json.dumps(want))
    return root, {"cached": False, "path": str(root), "debootstrap_s": round(time.perf_counter() - t0, 1)}


def readme_block(readme: Path = REPO / "README.md") -> list[str]:
    """The command lines of the README's Raspberry Pi block (comments stripped, one command per line)."""
    text = readme.read_text(encoding="utf-8")
    m = re.search(r"<!-- pi:begin -->\s*```bash\n(.*?)```\s*<!-- pi:end -->", text, re.S)
    if m is None:
        raise PiError(f"{readme}: no ```bash block between <!-- pi:begin --> and <!-- pi:end -->")
    lines = []
    for raw in m.group(1).splitlines():
        line = re.sub(r"\s+#.*$", "", raw).strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _checkout_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout
    return [f for f in out.decode().split("\0") if f and (REPO / f).is_file()]


def stage(root: Path, inputs: dict[str, Path]) -> Path:
    """A fresh copy of the checkout in the emulated system, with the inputs beside it; returns it."""
    work = root / WORKDIR.lstrip("/")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for f in _checkout_files():
        (work / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, work / f)
    for name, src in inputs.items():
        shutil.copytree(src, work / name)
    (work / "data").mkdir()
    # Trust what the host trusts (a TLS-inspecting proxy's CA, say): the host's bundle replaces the Pi's.
    bundle = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    if bundle.is_file():
        shutil.copy2(bundle, root / "etc/ssl/certs/ca-certificates.crt")
    shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")
    return work


_RUNNER = r"""
set -u
sudo() { "$@"; }  # root in the emulated system; a Pi user types sudo
log=__LOG__; : > "$log"
cd __WORKDIR__
# what the emulated system is, from inside it
python3 -c 'import json, platform; print(json.dumps({"machine": platform.machine(), "python": platform.python_version(), "libc": " ".join(platform.libc_ver())}))' > "$log.system"
step() {  # step INDEX LINE: run LINE in this shell (so `. venv/bin/activate` carries over), log it
  local t0 t1 rc sp
  t0=$(date +%s%N)
  echo "+ $2"
  eval "$2"; rc=$?
  t1=$(date +%s%N)
  sp=null
  if [ -n "${VIRTUAL_ENV:-}" ]; then
    sp=$(du -sb "$VIRTUAL_ENV"/lib/python3*/site-packages | cut -f1)
    case "$2" in *"pip install"*)  # what the install holds, largest first
      du -sb "$VIRTUAL_ENV"/lib/python3*/site-packages/* | sort -rn | head -12 > "$log.du$1";; esac
  fi
  printf '{"index": %d, "rc": %d, "ms": %d, "site_packages_bytes": %s}\n' "$1" "$rc" $(( (t1 - t0) / 1000000 )) "$sp" >> "$log"
  return $rc
}
"""


def run_emulated(root: Path, lines: list[str], data: Path,
                 timeout: float) -> tuple[list[dict], dict[str, str], str, float]:
    """Run the block in the emulated system (fresh venvs); returns per-line records, what the system
    says it is (machine, Python, libc), the output and seconds."""
    for line in lines:  # every run starts from a fresh virtual environment
        m = re.match(r"python3 -m venv (\S+)", line)
        if m:
            shutil.rmtree(root / m.group(1).replace("~", "root", 1).lstrip("/"), ignore_errors=True)
    log_name = f"root/pi-steps.{os.getpid()}.jsonl"  # this run's own log, should an earlier run linger
    body = _RUNNER.replace("__WORKDIR__", WORKDIR).replace("__LOG__", "/" + log_name)
    body += "".join(f"step {i} {shlex.quote(line)} || exit $?\n" for i, line in enumerate(lines))
    (root / "root/pi-run.sh").write_text(body)
    env = {"HOME": "/root", "PATH": PATH, "LANG": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "QEMU_CPU": QEMU_CPU,
           "PIP_ROOT_USER_ACTION": "ignore", "TERM": "dumb"}
    if os.environ.get("PIP_CERT") or Path("/etc/ssl/certs/ca-certificates.crt").is_file():
        env["PIP_CERT"] = "/etc/ssl/certs/ca-certificates.crt"
    inner = " ".join(["chroot", str(root), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
                      "/bin/bash", "/root/pi-run.sh"])
    mounts = (f"mount -t proc proc {root}/proc && mount --bind /dev {root}/dev && "
              f"mount --bind {data} {root}{WORKDIR}/data && mount -o remount,bind,ro {root}{WORKDIR}/data && ")
    t0 = time.perf_counter()
    try:
        res = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", mounts + inner],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise PiError(f"the emulated run took longer than {timeout:g} s") from exc
    seconds = time.perf_counter() - t0
    log = root / log_name
    steps = [json.loads(s) for s in log.read_text().splitlines()] if log.is_file() else []
    probe = log.with_name(log.name + ".system")
    system = json.loads(probe.read_text()) if probe.is_file() and probe.read_text().strip() else {}
    probe.unlink(missing_ok=True)
    for step in steps:
        du = log.with_name(f"{log.name}.du{step['index']}")
        if du.is_file():
            step["largest_mb"] = {Path(path).name: round(int(size) / 1e6, 1)
                                  for size, path in (ln.split("\t", 1) for ln in du.read_text().splitlines())}
            du.unlink()
    log.unlink(missing_ok=True)
    return steps, system, res.stdout + res.stderr, seconds


def build_inputs(tmp: Path) -> dict[str, Path]:
    """student/ (lead I), student-mlii/ (lead MLII: MIT-BIH has no lead I), both int8 .tflite, and a
    signed TFLite Micro bundle of student/ with its public key (needs the train and export extras)."""
    import dataclasses

    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO))
    import tiny_export as tx
    from train.data.synthetic import condition_windows

    from ecg_edge.cli import main as cli

    out: dict[str, Path] = {}
    for name, lead, src in (("student", "I", "I"), ("student-mlii", "MLII", "II")):
        x, y = condition_windows(40, 1, fs=tx.FS_DEVICE, leads=(src,), preprocess=tx.CONFIG)
        calib, _ = condition_windows(12, 2, fs=tx.FS_DEVICE, leads=(src,), preprocess=tx.CONFIG)
        with tx.one_thread():
            model = tx.train_tiny(x, y, leads=(lead,))
            spec = dataclasses.replace(tx._calibrated(calib), leads=(lead,), provenance={
                "model": f"test_student (train.models.student), 150 steps on synthetic lead {src} windows (bench/pi.py)",
                "calibration": f"{len(calib)} preprocessed synthetic lead {src} windows"})
            from distill.export import export_tflite
            export_tflite(model, spec, tmp / name, "int8", calib)
        out[name] = tmp / name
    np.save(tmp / "golden.npy", condition_windows(4, 3, fs=tx.FS_DEVICE, leads=("I",), preprocess=tx.CONFIG)[0])
    keys = tmp / "keys"
    for argv in (["keygen", "--out", str(keys)],
                 ["package", "--artifact", str(out["student"]), "--target", "tflm", "--out", str(tmp / "bundle"),
                  "--golden", str(tmp / "golden.npy"), "--sign", str(keys / "signing_key.pem"),
                  "--no-firmware"]):  # the firmware is tests/test_firmware.py's; a Pi checks the model
        with open(os.devnull, "w") as null:
            old = sys.stdout
            sys.stdout = null
            try:
                if cli(argv) != 0:
                    raise PiError(f"ecg-edge {' '.join(argv)} failed")
            finally:
                sys.stdout = old
    shutil.copy2(keys / "signing_key.pub.pem", tmp / "bundle.pub")
    out["bundle"] = tmp / "bundle"
    return out


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _jsonl(path: Path) -> tuple[list[dict], list[dict]]:
    items = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
    return [i for i in items if i["type"] == "window"], [i for i in items if i["type"] == "event"]


def _clear_agreement(model: Path, la: np.ndarray, lb: np.ndarray) -> dict[str, Any]:
    """The two machines' decisions on the windows no output error within the int8 tolerance can
    change (distill.parity.clear_windows on the x86 logits; the tolerance is the depth rule of a
    bundle's LiteRT check, edge_runtime.backends.int8_tolerance_steps), and that tolerance. A
    window whose top two classes lie closer than that can flip between XNNPACK's x86 and Arm
    kernels: its decision is counted in the raw agreement only."""
    from distill.parity import clear_windows
    from edge_runtime.artifact import load_artifact
    from edge_runtime.backends import decide, int8_tolerance_steps, probabilities
    from firmware_bridge.bundle.package import tflite_requantizations

    art = load_artifact(model)
    m = art.manifest
    if not m.output.quantized:
        return {}
    tol = int(int8_tolerance_steps(tflite_requantizations(art.model_path.read_bytes())))
    clear = clear_windows(la.astype(np.float64), m.multilabel, m.thresholds, tol * m.output.scale)
    same = np.all(decide(probabilities(la, m.multilabel), m.thresholds, m.multilabel)
                  == decide(probabilities(lb, m.multilabel), m.thresholds, m.multilabel), axis=1)
    return {"int8_tolerance_steps": tol, "clear_windows": int(clear.sum()),
            "decisions_equal_on_clear_fraction": float(same[clear].mean()) if clear.any() else 1.0,
            "flipped_windows_all_unclear": bool(not (~same & clear).any())}


def compare(line: str, pi_dir: Path, x86_dir: Path) -> dict[str, Any]:
    """The x86 and emulated-aarch64 outputs of one `ecg-edge stream` line, side by side."""
    from edge_runtime.artifact import load_artifact
    from edge_runtime.backends import decide

    argv = shlex.split(line)
    model = _flag(argv, "--artifact") or _flag(argv, "--model")  # --model: the spelling before --artifact
    audit, jsonl = _flag(argv, "--audit"), _flag(argv, "--jsonl")
    if not (audit and jsonl):
        raise PiError(f"README Pi block: {line!r}: a stream line needs --audit and --jsonl to be compared")
    a, b = np.load(x86_dir / audit), np.load(pi_dir / audit)
    wa, ea = _jsonl(x86_dir / jsonl)
    wb, eb = _jsonl(pi_dir / jsonl)
    same_windows = a["index"].shape == b["index"].shape and bool(np.array_equal(a["usable"], b["usable"]))
    res: dict[str, Any] = {"command": line, "windows": int(a["index"].size), "windows_pi": int(b["index"].size),
                           "usable_windows_equal": same_windows,
                           "beats": int(a["peaks"].size), "r_peaks_equal": bool(np.array_equal(a["peaks"], b["peaks"]))}
    if same_windows:
        res["max_abs_window_input_diff_mv"] = float(np.max(np.abs(a["inputs"] - b["inputs"]), initial=0.0))
    if model and same_windows:
        man = load_artifact(x86_dir / model).manifest
        out = man.output
        step = (lambda y: np.rint(y / out.scale) + out.zero_point) if out.quantized else (lambda y: y)
        ok = ~np.isnan(a["logits"][:, 0])
        res["int8_output_max_step_diff"] = float(np.max(np.abs(step(a["logits"][ok]) - step(b["logits"][ok])), initial=0.0))
        res.update(_clear_agreement(x86_dir / model, a["logits"][ok], b["logits"][ok]))
        pa = np.array([[w["probabilities"][k] for k in man.labels] for w in wa if w["probabilities"]])
        pb = np.array([[w["probabilities"][k] for k in man.labels] for w in wb if w["probabilities"]])
        if pa.shape == pb.shape and len(pa):
            da = decide(pa, man.thresholds, man.multilabel)
            db = decide(pb, man.thresholds, man.multilabel)
            res["decisions"] = int(len(pa))
            res["decisions_equal_fraction"] = float(np.mean(np.all(da == db, axis=1)))
        else:
            res["decisions"], res["decisions_equal_fraction"] = int(len(pa)), 0.0
    strip = [{k: e[k] for k in ("kind", "label", "t_start_s", "t_end_s")} for e in ea if e["kind"] != "end"]
    strip_b = [{k: e[k] for k in ("kind", "label", "t_start_s", "t_end_s")} for e in eb if e["kind"] != "end"]
    res["events"], res["events_equal"] = len(strip), strip == strip_b
    csv_path = _flag(argv, "--csv")
    if csv_path:  # every column but the times and the probabilities (one int8 step moves those; see above)
        keep = lambda rows: [{k: v for k, v in r.items() if not k.startswith(("latency", "p_", "smoothed_"))}  # noqa: E731
                             for r in rows]
        ra, rb = (keep(list(csv.DictReader(open(d / csv_path)))) for d in (x86_dir, pi_dir))
        res["csv_rows_equal_but_probabilities"] = ra == rb
    return res


def run_x86(lines: list[str], work: Path, data: Path, inputs: dict[str, Path]) -> dict[int, float]:
    """The block's stream lines with this interpreter, in a folder laid out as the emulated one."""
    for name, src in inputs.items():
        shutil.copytree(src, work / name)
    (work / "data").symlink_to(data.resolve())
    seconds = {}
    for i, line in enumerate(lines):
        if line.startswith("ecg-edge stream"):
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "ecg_edge", *shlex.split(line)[1:]], cwd=work,
                                 capture_output=True, text=True)
            if res.returncode != 0:
                raise PiError(f"x86: {line}: exit {res.returncode}: {res.stderr.strip().splitlines()[-1:]}")
            seconds[i] = time.perf_counter() - t0
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                   help="folder with mitdb/ and physionet2017/ (default: ../shared/data)")
    p.add_argument("--artifacts", type=Path, help="a folder with student/, student-mlii/, bundle/ and bundle.pub to use "
                                                  "instead of the tiny test students (made there when it has no bundle/)")
    p.add_argument("--timeout", type=float, default=1800.0, help="limit for the emulated run (s)")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    for sub in ("mitdb/100.hea", "physionet2017/A00001.hea"):
        if not (args.data / sub).is_file():
            raise SystemExit(f"bench/pi.py: {args.data / sub}: not found (--data: the PhysioNet records)")
    check_host()
    lines = readme_block()
    root, rootfs = ensure_rootfs()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_p = Path(tmp)
        t0 = time.perf_counter()
        src = args.artifacts or tmp_p / "inputs"
        if not (src / "bundle").is_dir():  # made here (and kept in --artifacts when given)
            src.mkdir(parents=True, exist_ok=True)
            build_inputs(src)
        inputs = {n: src / n for n in ("student", "student-mlii", "bundle")}
        t_build = time.perf_counter() - t0
        work = stage(root, inputs)
        shutil.copy2(src / "bundle.pub", work / "bundle.pub")
        steps, system, output, emu_s = run_emulated(root, lines, args.data, args.timeout)
        failed = next((s for s in steps if s["rc"] != 0), None)
        if failed is not None or len(steps) != len(lines):
            where = lines[failed["index"]] if failed else lines[len(steps)] if len(steps) < len(lines) else "?"
            raise SystemExit(f"bench/pi.py: emulated aarch64: {where!r} failed:\n" + "\n".join(output.splitlines()[-15:]))
        x86 = tmp_p / "x86"
        x86.mkdir()
        shutil.copy2(src / "bundle.pub", x86 / "bundle.pub")
        x86_s = run_x86(lines, x86, args.data, inputs)
        streams = [compare(lines[i], work, x86) | {"x86_s": round(x86_s[i], 2),
                                                   "emulated_s": round(steps[i]["ms"] / 1e3, 2)} for i in x86_s]
    installs: dict[str, dict[str, Any]] = {}
    variant = None
    for s in steps:  # each install's size right after it, and after the commands that follow it ran
        line = lines[s["index"]]
        m = re.search(r"pip install .*?\.\[([\w,]+)\]", line)
        if m:
            variant = m.group(1)
            installs[variant] = {"command": line, "emulated_install_s": round(s["ms"] / 1e3, 1),
                                 "largest_entries_mb": s.get("largest_mb", {})}
        if variant and s["site_packages_bytes"] is not None:
            key = "site_packages_mb" if m else "site_packages_mb_after_use"
            installs[variant][key] = round(s["site_packages_bytes"] / 1e6, 1)
    sizes_after = [s["site_packages_bytes"] for s in steps if s["site_packages_bytes"] is not None]
    verify = [{"command": lines[s["index"]], "rc": s["rc"]} for s in steps if lines[s["index"]].startswith("ecg-edge verify")]
    tflm_line = next((ln for ln in output.splitlines() if "TFLite Micro" in ln or "tflite-micro" in ln), None)
    wearable = [ln.strip() for ln in output.splitlines() if "wearable replaying" in ln or ln.strip().startswith("link:")]
    checks = {
        "emulated_machine_is_aarch64": system.get("machine") == "aarch64",
        "every_readme_line_exit_0": all(s["rc"] == 0 for s in steps) and len(steps) == len(lines),
        "r_peaks_equal": all(s["r_peaks_equal"] for s in streams),
        "window_inputs_within_float32_rounding": all(s.get("max_abs_window_input_diff_mv", 1.0) <= 1e-5 for s in streams),
        "int8_outputs_within_tolerance": all(s.get("int8_output_max_step_diff", 0.0) <= s.get("int8_tolerance_steps", 1)
                                             for s in streams),
        "decisions_equal_on_clear_windows": all(s.get("decisions_equal_on_clear_fraction", 1.0) == 1.0 for s in streams),
        "events_equal_where_decisions_equal": all(s["events_equal"] or s.get("decisions_equal_fraction", 1.0) < 1.0
                                                  for s in streams),
        "verify_passes": bool(verify) and all(v["rc"] == 0 for v in verify),
        "tflite_micro_reported_not_available": tflm_line is not None and "not available" in tflm_line,
        "csv_rows_equal_but_probabilities": all(s.get("csv_rows_equal_but_probabilities", True) for s in streams),
    }
    edge = installs.get("edge", {})
    goals = {f"edge_site_packages_mb<={GOAL_EDGE_MB:g}": max(edge.get(k, 1e9) for k in (
        "site_packages_mb", "site_packages_mb_after_use")) <= GOAL_EDGE_MB}
    result = {"benchmark": "pi", "emulated": "qemu-user-static on x86: times are emulation times, not Raspberry Pi figures",
              "system": f"Debian 12 {SUITE} arm64 (debootstrap minbase + {', '.join(PACKAGES)})", "rootfs": rootfs, "inside": system,
              "installs": installs, "site_packages_mb_at_end": round(max(sizes_after) / 1e6, 1) if sizes_after else None,
              "streams": streams, "verify": verify, "tflite_micro_line": tflm_line,
              "virtual_wearable": wearable,
              "steps": [{"command": lines[s["index"]], "rc": s["rc"], "emulated_s": round(s["ms"] / 1e3, 1)} for s in steps],
              "times_s": {"inputs_x86": round(t_build, 1), "emulated_block": round(emu_s, 1),
                          "total": round(time.perf_counter() - t_start, 1)},
              "checks": checks, "goals": goals, "env": {"host": platform.machine(), "python": platform.python_version()}}
    emit(result, args.out)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PiError as exc:
        print(f"bench/pi.py: {exc}", file=sys.stderr)
        sys.exit(2)
