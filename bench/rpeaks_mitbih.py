"""R peaks, heart rate, AF episodes and signal quality on the MIT-BIH Arrhythmia Database; prints JSON.

    python bench/rpeaks_mitbih.py [--records 100,203] [--out FILE] [--data DIR] [--workers 2]
                                  [--nk-records 100,105,119,203,208]

Every record (lead MLII; records 102 and 104 have no MLII and use their first lead, V5) is
streamed through `edge_runtime.beats.RPeakDetector` in 73-sample chunks (one Polar H10
notification), once at its own 360 Hz and once after anti-aliased resampling to 130 Hz
(`scipy.signal.resample_poly`, the Polar H10 rate). Detections are matched to the reference beat
annotations (AAMI N/S/V/F/Q beat symbols, as `train.data.mitdb`) within 150 ms. The detector never
sees the annotations. See "definitions" in the output for every figure.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from multiprocessing import Pool  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.signal import resample_poly  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from edge_runtime.beats import RPeakDetector, heart_rate_bpm  # noqa: E402
from edge_runtime.rhythm import AfDetector, window_quality  # noqa: E402
from train.data.mitdb import PACED, MitBih  # noqa: E402
from report import emit  # noqa: E402  (bench/report.py, beside this script)

CHUNK = 73
TOL_S = 0.150
HR_WINDOW_S, HR_TOL_BPM = 10.0, 2.0
AF_RECORDS = ("201", "202", "203", "210", "219", "221", "222")
DEFINITIONS = {
    "matching": "a detection matches an unmatched reference beat (AAMI N/S/V/F/Q symbols) within 150 ms, "
                "nearest first; Se = TP/(TP+FN), +P = TP/(TP+FP); totals are gross (summed over beats)",
    "excluding_vfl": "as AAMI EC57 does, reference beats and detections inside ventricular flutter episodes "
                     "((VFL rhythm annotations: record 207 only) are left out; the flutter waves are not beats "
                     "in the annotation, so a detector firing on them scores false positives",
    "hr": "per 10 s window [10k, 10k+10) s: 60 / mean RR of the beats in the window (RR intervals whose two "
          "beats both lie in it; edge_runtime.beats.heart_rate_bpm) from detections vs from reference beats; "
          "windows with < 2 reference beats skipped; a window with < 2 detections fails",
    "af": "AfDetector over the detected beats (360 Hz); reference episodes are (AFIB rhythm annotations. "
          "An episode counts as detected when it overlaps a detected episode in time; a detected episode is "
          "true when it overlaps a reference episode. episode_se = detected ref / ref episodes; "
          "episode_ppv = true detected / detected episodes; time_se = overlap / reference AF time; "
          "time_ppv = overlap / detected AF time",
    "quality": "window_quality on 10 s windows of the lead at 360 Hz; Se/+P restricted to usable windows",
    "nk_agreement": "ours vs neurokit2's offline detector (nk.ecg_clean then nk.ecg_peaks(method='neurokit'), "
                    "zero-phase, whole record) taken as the reference, 150 ms; their Se/+P vs the annotations beside",
}


def match(ref_s: np.ndarray, det_s: np.ndarray, tol: float = TOL_S) -> tuple[int, int, int]:
    """(TP, FN, FP): each reference beat takes the nearest unmatched detection within `tol` s."""
    used = np.zeros(det_s.size, bool)
    tp, j = 0, 0
    for t in ref_s:  # loop over beats, two pointers
        while j < det_s.size and det_s[j] < t - tol:
            j += 1
        k, best, best_d = j, -1, tol
        while k < det_s.size and det_s[k] <= t + tol:
            if not used[k] and abs(det_s[k] - t) <= best_d:
                best, best_d = k, abs(det_s[k] - t)
            k += 1
        if best >= 0:
            used[best] = True
            tp += 1
    return tp, ref_s.size - tp, int(det_s.size - used.sum())


def stream(x: np.ndarray, fs: float) -> tuple[np.ndarray, float]:
    """R peaks of `x` streamed in CHUNK-sample chunks, and the wall time it took."""
    det = RPeakDetector(fs)
    t0 = time.perf_counter()
    parts = [det.process(x[i:i + CHUNK]) for i in range(0, x.size, CHUNK)]
    return np.concatenate(parts), time.perf_counter() - t0


def inside(t: np.ndarray, episodes: list[tuple[float, float]]) -> np.ndarray:
    mask = np.zeros(t.size, bool)
    for a, b in episodes:
        mask |= (t >= a) & (t < b)
    return mask


def hr_windows(ref: np.ndarray, fs_ref: float, peaks: np.ndarray, fs: float, dur_s: float) -> tuple[int, int]:
    """(windows compared, windows within HR_TOL_BPM); beats as sample indices at their rates."""
    n = ok = 0
    for k in range(int(dur_s // HR_WINDOW_S)):
        a, b = k * HR_WINDOW_S, (k + 1) * HR_WINDOW_S
        hr_ref = heart_rate_bpm(ref, fs_ref, a, b)
        if np.isnan(hr_ref):
            continue
        hr = heart_rate_bpm(peaks, fs, a, b)
        n += 1
        ok += int(abs(hr - hr_ref) <= HR_TOL_BPM)
    return n, ok


def overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    return float(sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b))


def af_figures(ref: list[tuple[float, float]], det: list[tuple[float, float]]) -> dict:
    return {"ref_episodes": len(ref), "ref_detected": sum(overlap([r], det) > 0 for r in ref),
            "det_episodes": len(det), "det_true": sum(overlap([d], ref) > 0 for d in det),
            "ref_s": round(sum(b - a for a, b in ref), 1), "det_s": round(sum(b - a for a, b in det), 1),
            "overlap_s": round(overlap(ref, det), 1)}


def quality_figures(x: np.ndarray, fs: float, ref_s: np.ndarray, det_s: np.ndarray) -> dict:
    n = int(HR_WINDOW_S * fs)
    bad = [(i / fs, (i + n) / fs) for i in range(0, x.size - n + 1, n) if not window_quality(x[i:i + n], fs).usable]
    n_win = x.size // n
    tp, fn, fp = match(ref_s[~inside(ref_s, bad)], det_s[~inside(det_s, bad)])
    return {"windows": n_win, "usable": n_win - len(bad), "tp": tp, "fn": fn, "fp": fp}


def run_record(args: tuple[str, str]) -> dict:
    root, rid = args
    rec = MitBih(root).read(rid)
    lead = "MLII" if "MLII" in rec.leads else rec.leads[0]
    x = rec.signal[rec.leads.index(lead)].astype(np.float64)
    ref_s = rec.labels["beats"]["sample"] / rec.fs
    episodes = rec.labels["rhythm_episodes"]
    vfl = [(e["start"] / rec.fs, e["end"] / rec.fs) for e in episodes if e["rhythm"] == "VFL"]
    af_ref = [(e["start"] / rec.fs, e["end"] / rec.fs) for e in episodes if e["rhythm"] == "AFIB"]
    dur = x.size / rec.fs
    out: dict = {"record": rid, "lead": lead, "paced": rid in PACED, "beats": int(ref_s.size), "duration_s": dur}
    for fs in (360.0, 130.0):
        xs = x if fs == rec.fs else resample_poly(x, 13, 36)
        peaks, wall = stream(xs, fs)
        det_s = peaks / fs
        tp, fn, fp = match(ref_s, det_s)
        keep_r, keep_d = ~inside(ref_s, vfl), ~inside(det_s, vfl)
        tp2, fn2, fp2 = match(ref_s[keep_r], det_s[keep_d])
        n_hr, ok_hr = hr_windows(rec.labels["beats"]["sample"], rec.fs, peaks, fs, dur)
        out[f"{fs:g}Hz"] = {"tp": tp, "fn": fn, "fp": fp, "excl_vfl": {"tp": tp2, "fn": fn2, "fp": fp2},
                            "hr_windows": n_hr, "hr_within_2bpm": ok_hr, "stream_wall_s": wall}
        if fs == 360.0:
            af = AfDetector()
            af.process(det_s)
            af.flush(dur)
            out["af"] = af_figures(af_ref, [(e.onset_s, e.offset_s) for e in af.episodes])
            out["quality"] = quality_figures(x, fs, ref_s, det_s)
    return out


def nk_agreement(root: str, rid: str) -> dict:
    import neurokit2 as nk
    rec = MitBih(root).read(rid)
    lead = "MLII" if "MLII" in rec.leads else rec.leads[0]
    x = rec.signal[rec.leads.index(lead)].astype(np.float64)
    _, info = nk.ecg_peaks(nk.ecg_clean(x, sampling_rate=int(rec.fs), method="neurokit"),
                           sampling_rate=int(rec.fs), method="neurokit")
    theirs = np.asarray(info["ECG_R_Peaks"]) / rec.fs
    ours = stream(x, rec.fs)[0] / rec.fs
    tp, fn, fp = match(theirs, ours)
    tp_r, fn_r, fp_r = match(rec.labels["beats"]["sample"] / rec.fs, theirs)
    return {"record": rid, "ours_vs_nk": rates(tp, fn, fp), "nk_vs_annotations": rates(tp_r, fn_r, fp_r)}


def rates(tp: int, fn: int, fp: int) -> dict:
    return {"tp": tp, "fn": fn, "fp": fp, "se": round(100 * tp / max(1, tp + fn), 3),
            "ppv": round(100 * tp / max(1, tp + fp), 3)}


def beat_totals(rows: list[dict], key: str) -> dict:
    pick = (lambda r: r[key]) if "." not in key else (lambda r: r[key.split(".")[0]][key.split(".")[1]])
    return rates(*(sum(pick(r)[k] for r in rows) for k in ("tp", "fn", "fp")))


def af_totals(rows: list[dict]) -> dict:
    s = {k: round(sum(r["af"][k] for r in rows), 1) for k in rows[0]["af"]} if rows else {}
    if not s:
        return {}
    return {**s, "episode_se": round(s["ref_detected"] / max(1, s["ref_episodes"]), 3),
            "episode_ppv": round(s["det_true"] / max(1, s["det_episodes"]), 3),
            "time_se": round(s["overlap_s"] / max(1e-9, s["ref_s"]), 3),
            "time_ppv": round(s["overlap_s"] / max(1e-9, s["det_s"]), 3)}


def summarise(rows: list[dict]) -> dict:
    out: dict = {}
    non_paced = [r for r in rows if not r["paced"]]
    for fs in ("360Hz", "130Hz"):
        n_hr = sum(r[fs]["hr_windows"] for r in non_paced)
        ok_hr = sum(r[fs]["hr_within_2bpm"] for r in non_paced)
        wall = sum(r[fs]["stream_wall_s"] for r in rows)
        out[fs] = {"gross": beat_totals(rows, fs), "excluding_vfl": beat_totals(rows, f"{fs}.excl_vfl"),
                   "hr_non_paced": {"windows": n_hr, "within_2bpm": ok_hr,
                                    "fraction": round(ok_hr / max(1, n_hr), 4), "goal": 0.95},
                   "stream_real_time_factor": round(sum(r["duration_s"] for r in rows) / max(wall, 1e-9))}
        worst = sorted(rows, key=lambda r: -(r[fs]["fn"] + r[fs]["fp"]))[:6]
        out[fs]["worst"] = [{"record": r["record"], "fn": r[fs]["fn"], "fp": r[fs]["fp"]} for r in worst]
    af_rows = [r for r in rows if r["record"] in AF_RECORDS]
    other = [r for r in rows if r["record"] not in AF_RECORDS and not r["paced"]]
    out["af"] = {"af_records": af_totals(af_rows),
                 "paced_217": af_totals([r for r in rows if r["record"] == "217"]),
                 "other_non_paced": {"records": len(other),
                                     "false_episodes": sum(r["af"]["det_episodes"] for r in other),
                                     "false_af_s": round(sum(r["af"]["det_s"] for r in other), 1),
                                     "total_s": round(sum(r["duration_s"] for r in other), 1)}}
    q = {k: sum(r["quality"][k] for r in rows) for k in ("windows", "usable")}
    out["quality"] = {**q, "usable_fraction": round(q["usable"] / max(1, q["windows"]), 4),
                      "beats_in_usable_windows": beat_totals(rows, "quality")}
    return out


def per_record(rows: list[dict]) -> dict:
    table = {}
    for r in rows:
        row = {"lead": r["lead"]}
        for fs in ("360Hz", "130Hz"):
            row[fs] = {**rates(r[fs]["tp"], r[fs]["fn"], r[fs]["fp"]),
                       "hr_fraction": round(r[fs]["hr_within_2bpm"] / max(1, r[fs]["hr_windows"]), 3)}
        table[r["record"]] = row
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", help="comma-separated record names (default: all 48)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mitdb")
    p.add_argument("--nk-records", default="100,105,119,203,208",
                   help="records for the neurokit2 comparison ('' skips)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    ids = args.records.split(",") if args.records else MitBih(args.data).ids()
    nk_ids = [r for r in args.nk_records.split(",") if r]
    with Pool(max(1, args.workers)) as pool:
        rows = pool.map(run_record, [(str(args.data), rid) for rid in ids], chunksize=1)
        try:
            nk = pool.starmap(nk_agreement, [(str(args.data), rid) for rid in nk_ids]) if nk_ids else []
        except ImportError as exc:
            nk = [{"skipped": f"neurokit2 not installed ({exc})"}]
    result = {"benchmark": "rpeaks_mitbih", "records": len(rows), "chunk_samples": CHUNK,
              "lead_note": "MLII; records 102 and 104 have no MLII: their first lead (V5)",
              "definitions": DEFINITIONS, "totals": summarise(rows), "nk_agreement": nk,
              "per_record": per_record(rows),
              "per_record_af": {r["record"]: r["af"] for r in rows
                                if r["af"]["ref_episodes"] or r["af"]["det_episodes"]},
              "wall_s": round(time.perf_counter() - t0, 1),
              "env": {"python": platform.python_version(), "numpy": np.__version__, "workers": args.workers,
                      "cpus": os.cpu_count(), "machine": platform.machine()}}
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
