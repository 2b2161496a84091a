"""Seeded synthetic 12-lead ECGs with labelled rhythm and conduction conditions.

The project's built-in default data: the main job runs with no dataset on disk. Record `i` is
a pure function of `(seed, i, fs, duration_s, conditions, noise_mv)`, generated on its own in
a few milliseconds, bit-identical on every call.

The model, wave by wave, is ECGSYN (McSharry PE, Clifford GD, Tarassenko L, Smith LA. "A
dynamical model for generating synthetic electrocardiogram signals." IEEE TBME 50(3):289-294,
2003) as neurokit2 implements it (Makowski D, et al. "NeuroKit2: A Python toolbox for
neurophysiological signal processing." Behavior Research Methods 53:1689-1696, 2021):

* each beat is five Gaussian events P, Q, R, S, T; ECGSYN's z-equation
  ``dz/dt = -sum_i a_i dtheta_i exp(-dtheta_i^2 / 2 b_i^2) - (z - z0)`` is, on its limit cycle,
  the sum of those Gaussians passed through the first-order high-pass ``s / (s + 1)``; we
  evaluate it in that closed form (the Gaussians exactly at each sample time, the high-pass as
  a bilinear IIR filter) instead of integrating the ODE: the same waveform (a test compares it
  with neurokit2's ECGSYN equations) in ~3 ms per 10 s 12-lead record at 500 Hz, where
  `nk.ecg_simulate(method="multileads")` takes ~0.8 s;
* sinus RR intervals come from neurokit2's ECGSYN RR process (LF 0.1 Hz and HF 0.25 Hz
  spectral peaks, LF/HF ratio 0.5, the requested mean and standard deviation of heart rate).

Where `nk.ecg_simulate(method="multileads")` is not used as is, and why:

* it rescales every lead separately to span -0.4..1.2 mV, so amplitudes between leads are
  arbitrary, Einthoven's law fails by ~1 mV and its lead II is dominated by the T wave. Here
  each wave is a 3-D heart dipole (the 3-D extension of ECGSYN by Sameni R, Clifford GD,
  Jutten C, Shamsollahi MB, EURASIP J Adv Signal Process 2007:43407) projected onto I, II and
  V1-V6 with the Dower matrix (Dower GE, Machado HB, Osborne JA. Clin Cardiol 3:87-95, 1980);
  III, aVR, aVL and aVF are then derived from I and II (Einthoven, Goldberger), so the limb
  leads obey Einthoven's law exactly, noise included;
* ECGSYN places waves at fixed phase angles, which widens the QRS at slow rates; here Q, R and
  S keep fixed durations, the P-R delay scales as RR^(1/4) and the R-T delay and T width as
  RR^(1/3) (Fridericia) of the *preceding* RR interval; at 60 bpm the timings equal ECGSYN's.

Conditions (single label, codes as PTB-XL SCP statements where one exists):

* NORM: sinus rhythm 65-95 bpm, ECGSYN heart-rate variability (SD 1-3 bpm).
* SBRAD: sinus bradycardia 40-55 bpm. STACH: sinus tachycardia 105-140 bpm.
* AFIB: atrial fibrillation. No P wave in any lead; RR intervals drawn independently from a
  shifted log-normal law (0.3 s AV-node refractory period plus a log-normal excess; coefficient
  of variation 0.18-0.32), so they are irregular and uncorrelated; mean ventricular rate
  65-125 bpm; fibrillatory f-waves from the sawtooth model of Stridh M, Sornmo L (IEEE TBME
  48(1):105-111, 2001): 4.5-8.5 Hz with slow frequency and amplitude modulation, 0.06-0.15 mV
  in V1, weaker in II/III/aVF, weakest in I.
* WQRS: wide QRS (nonspecific intraventricular conduction delay, PTB-XL's nearest code is
  IVCD): Q, R and S Gaussians 1.4-1.65 times wider and spread apart, so QRS lasts 130-160 ms,
  with the secondary repolarisation change of a conduction block (T vector turned against the
  QRS vector); sinus rhythm 65-95 bpm.

Every record also varies in electrical axis (a random 3-D rotation, SD 10 degrees per axis,
clipped at 25), overall amplitude (x 0.8-1.3) and P and T amplitudes (x 0.7-1.3). `noise_mv`
is the SD of white measurement noise on each electrode lead (I, II, V1-V6, before the other
limb leads are derived), plus a respiratory baseline wander (0.15-0.35 Hz) of 5 x `noise_mv`.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from neurokit2.ecg.ecg_simulate import _ecg_simulate_rrprocess
from scipy.signal import bilinear, lfilter

from edge_runtime.errors import ConfigError, DatasetError
from edge_runtime.spec import STANDARD_LEADS, Record
from train.data.sources import check_split

CONDITIONS: tuple[str, ...] = ("NORM", "AFIB", "SBRAD", "STACH", "WQRS")
WAVES: tuple[str, ...] = ("P", "Q", "R", "S", "T")

#: Dower matrix rows (Frank X left, Y foot, Z back) for the independent leads I, II, V1-V6.
DOWER = np.array([
    [0.632, -0.235, 0.059], [0.235, 1.066, -0.132],
    [-0.515, 0.157, -0.917], [0.044, 0.164, -1.387], [0.882, 0.098, -1.277],
    [1.213, 0.127, -0.601], [1.125, 0.127, -0.086], [0.831, 0.076, 0.230],
])
#: Normal heart dipoles (Frank X, Y, Z in mV) of P, septal Q, R, terminal S and T, set by hand
#: so the Dower projection gives textbook leads: R ~1.2 mV in II, rS in V1, transition V3-V4,
#: qR in V5-V6, upright T except in aVR, QRS mostly negative in aVR.
_DIPOLES = np.array([
    [0.16, 0.15, -0.03], [-0.30, -0.05, -0.30], [1.10, 0.95, 0.38],
    [-0.20, -0.08, 0.40], [0.30, 0.28, -0.15],
])
#: Wave centres relative to R (s) and Gaussian widths (s) at RR = 1 s; ECGSYN's defaults
#: (-70, -15, 0, 15, 100 degrees; widths 0.25, 0.1, 0.1, 0.1, 0.4 rad) give P -0.194 s and
#: T +0.278 s at 60 bpm; Q/R/S are narrower than ECGSYN's (+-42 ms, 16 ms) so that NORM QRS
#: measures ~90 ms. Widths >= 10 ms keep each Gaussian's spectrum < 1 % at 50 Hz, so sampling
#: the model directly at 100 Hz does not alias.
_OFFSETS = np.array([-0.194, -0.026, 0.0, 0.026, 0.278])
_SIGMAS = np.array([0.036, 0.011, 0.011, 0.011, 0.064])
#: f-wave weights on I, II, V1-V6 (largest in V1, next to the right atrium).
_F_WEIGHTS = np.array([0.10, 0.35, 1.0, 0.6, 0.35, 0.25, 0.15, 0.10])
_PRE_ROLL_S = 4.0   # simulated before t = 0 so ECGSYN's 1 s relaxation has settled
_RATES = {"NORM": (65.0, 95.0), "AFIB": (65.0, 125.0), "SBRAD": (40.0, 55.0),
          "STACH": (105.0, 140.0), "WQRS": (65.0, 95.0)}
_MISSING_P = 0.10


@dataclass(frozen=True)
class BeatPlan:
    """Everything one record is generated from (times in s from the record start, mV)."""

    condition: str
    r_times: np.ndarray      # R-peak times, pre-roll beats included (negative times)
    offsets: np.ndarray      # (n_beats, 5) wave centres relative to R
    sigmas: np.ndarray       # (n_beats, 5) wave widths
    dipoles: np.ndarray      # (5, 3) heart dipoles, Frank XYZ
    heart_rate_bpm: float    # 60 / mean RR of the beats inside the record
    qrs_ms: float            # nominal QRS duration: Q centre - 1.8 sd to S centre + 1.8 sd
    atrial: tuple[float, ...] | None  # f-wave parameters (see `fibrillatory_waves`), AFIB only


def sinus_r_times(t0: float, t1: float, hr_bpm: float, hr_std_bpm: float,
                  rng: np.random.Generator) -> np.ndarray:
    """R times from t0 to past t1 (s) for sinus rhythm, RR from neurokit2's ECGSYN RR process."""
    n = int(2 ** math.ceil(math.log2(t1 - t0 + 4.0)))  # RR sampled at 1 Hz over the span
    rr = _ecg_simulate_rrprocess(0.1, 0.25, 0.01, 0.01, 0.5, hr_bpm, hr_std_bpm, 1, n, rng)
    times = [t0]
    while times[-1] < t1:  # one step per beat
        times.append(times[-1] + float(np.interp(times[-1] - t0, np.arange(n), rr)))
    return np.asarray(times)


def af_r_times(t0: float, t1: float, hr_bpm: float, cv: float,
               rng: np.random.Generator, min_rr_s: float = 0.3) -> np.ndarray:
    """R times for atrial fibrillation: independent RR intervals, `min_rr_s` (the AV node's
    refractory period) plus a log-normal excess, with mean 60 / hr_bpm and SD cv * mean."""
    mean = 60.0 / hr_bpm
    cv_excess = cv * mean / (mean - min_rr_s)
    sigma = math.sqrt(math.log1p(cv_excess * cv_excess))
    mu = math.log(mean - min_rr_s) - sigma * sigma / 2
    rr = min_rr_s + rng.lognormal(mu, sigma, int((t1 - t0) / min_rr_s) + 2)
    times = t0 + np.concatenate([[0.0], np.cumsum(rr)])
    return times[: int(np.searchsorted(times, t1)) + 1]


def wave_trains(t: np.ndarray, r_times: np.ndarray, offsets: np.ndarray,
                sigmas: np.ndarray) -> np.ndarray:
    """(5, len(t)): for each wave, the sum over beats of unit-height Gaussians at R + offset."""
    out = np.zeros((len(WAVES), t.size))
    for k, r in enumerate(r_times):  # per beat: each Gaussian only over +-6 sd
        centres = r + offsets[k]
        lo = np.searchsorted(t, centres - 6 * sigmas[k])
        hi = np.searchsorted(t, centres + 6 * sigmas[k])
        for i in range(len(WAVES)):
            seg = t[lo[i]:hi[i]]
            out[i, lo[i]:hi[i]] += np.exp(-0.5 * ((seg - centres[i]) / sigmas[k, i]) ** 2)
    return out


def ecgsyn_relaxation(x: np.ndarray, fs: float) -> np.ndarray:
    """ECGSYN's `-(z - z0)` term: the high-pass s / (s + 1) (corner 1 rad/s) along the last axis."""
    b, a = bilinear([1.0, 0.0], [1.0, 1.0], fs)
    return lfilter(b, a, x, axis=-1)


def fibrillatory_waves(t: np.ndarray, params: tuple[float, ...]) -> np.ndarray:
    """Unit-lead f-wave signal (mV in V1), sawtooth of Stridh & Sornmo (2001), 3 harmonics.

    `params` = (f0 Hz, amplitude mV, frequency deviation Hz, FM rate Hz, relative amplitude
    modulation, AM rate Hz, FM phase, AM phase, start phase).
    """
    f0, amp, df, fm, da, fa, ph_f, ph_a, ph0 = params
    phase = ph0 + 2 * np.pi * f0 * t - (df / fm) * np.cos(2 * np.pi * fm * t + ph_f)
    envelope = amp * (1.0 + da * np.sin(2 * np.pi * fa * t + ph_a))
    saw = sum(np.sin(k * phase) / k for k in (1, 2, 3))
    return -envelope * saw / 1.4428  # 1.4428: the maximum of sum_k sin(k x) / k, k = 1..3


def limb_leads(eight: np.ndarray) -> np.ndarray:
    """(8, n) I, II, V1-V6 -> (12, n) in `STANDARD_LEADS` order; III and the augmented leads
    derived with Einthoven's and Goldberger's equations."""
    lead_i, lead_ii = eight[0], eight[1]
    derived = np.stack([lead_ii - lead_i, -(lead_i + lead_ii) / 2,
                        lead_i - lead_ii / 2, lead_ii - lead_i / 2])
    return np.concatenate([eight[:2], derived, eight[2:]])


def _rotation(angles: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _morphology(condition: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-record dipoles (5, 3) and reference widths (5,) for a condition."""
    dip = _DIPOLES * np.clip(rng.lognormal(0.0, 0.12), 0.8, 1.3)
    dip[0] *= rng.uniform(0.7, 1.3)
    dip[4] *= rng.uniform(0.7, 1.3)
    sigmas = _SIGMAS * np.array([1.0, *rng.uniform(0.92, 1.08, 3), 1.0])
    if condition == "AFIB":
        dip[0] = 0.0  # no organised atrial depolarisation
    if condition == "WQRS":
        sigmas[1:4] *= rng.uniform(1.4, 1.65)
        # secondary ST-T change: T vector turned against the QRS (R) vector
        dip[4] = -np.linalg.norm(dip[4]) * dip[2] / np.linalg.norm(dip[2])
    angles = np.clip(rng.normal(0.0, np.deg2rad(10.0), 3), -np.deg2rad(25), np.deg2rad(25))
    return dip @ _rotation(angles).T, sigmas


def plan_beats(condition: str, duration_s: float, rng_rhythm: np.random.Generator,
               rng_morph: np.random.Generator) -> BeatPlan:
    """Draw one record's rhythm and morphology (independent of the sampling rate)."""
    lo, hi = _RATES[condition]
    hr = rng_rhythm.uniform(lo, hi)
    t0 = -_PRE_ROLL_S - rng_rhythm.uniform(0.0, 60.0 / hr)
    atrial = None
    if condition == "AFIB":
        r = af_r_times(t0, duration_s + 1.0, hr, rng_rhythm.uniform(0.18, 0.32), rng_rhythm)
        atrial = (rng_morph.uniform(4.5, 8.5), rng_morph.uniform(0.06, 0.15),
                  rng_morph.uniform(0.05, 0.2), rng_morph.uniform(0.08, 0.25),
                  rng_morph.uniform(0.1, 0.4), rng_morph.uniform(0.05, 0.3),
                  *rng_morph.uniform(0.0, 2 * np.pi, 3))
    else:
        r = sinus_r_times(t0, duration_s + 1.0, hr, rng_rhythm.uniform(1.0, 3.0), rng_rhythm)
    dipoles, sig0 = _morphology(condition, rng_morph)
    rr_prev = np.diff(r, prepend=r[0] - 60.0 / hr)[:, None]
    scale = np.array([0.25, 0.0, 0.0, 0.0, 1.0 / 3.0])  # P: RR^(1/4); Q/R/S fixed; T: RR^(1/3)
    offsets = _OFFSETS * rr_prev ** scale
    if condition == "WQRS":  # spread Q and S apart with their widths
        offsets[:, [1, 3]] *= sig0[[1, 3]] / _SIGMAS[[1, 3]]
    sigmas = sig0 * rr_prev ** np.array([0.0, 0.0, 0.0, 0.0, 1.0 / 3.0])
    inside = r[(r >= 0.0) & (r < duration_s)]
    hr_real = 60.0 / float(np.mean(np.diff(inside))) if inside.size > 1 else hr
    q_on, s_off = offsets[0, 1] - 1.8 * sigmas[0, 1], offsets[0, 3] + 1.8 * sigmas[0, 3]
    qrs_ms = 1e3 * float(s_off - q_on)
    return BeatPlan(condition, r, offsets, sigmas, dipoles, hr_real, qrs_ms, atrial)


def render(plan: BeatPlan, fs: float, n: int, noise_mv: float,
           rng_noise: np.random.Generator) -> np.ndarray:
    """The 12-lead signal (12, n) float32 mV of a plan, sampled at `fs` from t = 0."""
    n_pre = int(math.ceil(-plan.r_times[0] * fs)) + int(fs)
    t = (np.arange(-n_pre, n)) / fs
    trains = wave_trains(t, plan.r_times, plan.offsets, plan.sigmas)
    eight = ecgsyn_relaxation((DOWER @ plan.dipoles.T) @ trains, fs)[:, n_pre:]
    t = t[n_pre:]
    if plan.atrial is not None:
        eight += _F_WEIGHTS[:, None] * fibrillatory_waves(t, plan.atrial)
    if noise_mv > 0:
        f_resp = rng_noise.uniform(0.15, 0.35)
        wander = np.sin(2 * np.pi * f_resp * t + rng_noise.uniform(0, 2 * np.pi))
        eight += 5 * noise_mv * rng_noise.uniform(-1.0, 1.0, (8, 1)) * wander
        eight += rng_noise.normal(0.0, noise_mv, eight.shape)
    return limb_leads(eight).astype(np.float32)


def _meta(rng: np.random.Generator) -> dict[str, Any]:
    """Age (years), sex, height (cm), weight (kg); each field None with probability 0.1."""
    sex = "M" if rng.random() < 0.5 else "F"
    mean_cm = 176.0 if sex == "M" else 163.0
    height = float(np.clip(rng.normal(mean_cm, 7.0), mean_cm - 21.0, mean_cm + 21.0))
    bmi = float(np.clip(rng.normal(26.0, 4.0), 18.0, 45.0))
    meta: dict[str, Any] = {"age": int(rng.integers(18, 91)), "sex": sex,
                            "height": round(height, 1),
                            "weight": round(bmi * (height / 100.0) ** 2, 1)}
    missing = rng.random(len(meta)) < _MISSING_P
    return {k: (None if gone else v) for (k, v), gone in zip(meta.items(), missing)}


def _report(plan: BeatPlan) -> str:
    hr = round(plan.heart_rate_bpm)
    if plan.condition == "AFIB":
        return (f"Atrial fibrillation, mean ventricular rate {hr} bpm, irregularly irregular "
                "rhythm, no P waves, fibrillatory waves.")
    rhythm = {"SBRAD": "Sinus bradycardia", "STACH": "Sinus tachycardia"}.get(
        plan.condition, "Sinus rhythm")
    text = f"{rhythm}, heart rate {hr} bpm, regular rhythm"
    if plan.condition == "WQRS":
        text += (f", wide QRS complex (about {10 * round(plan.qrs_ms / 10)} ms), "
                 "nonspecific intraventricular conduction delay")
    elif plan.condition == "NORM":
        text += ", normal QRS duration"
    return text + "."


def _check(ok: bool, field: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"Synthetic.{field}: expected {expected}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class Synthetic:
    """Seeded synthetic 12-lead ECGs (see the module docstring for the model and conditions).

    `labels`: "target" one-hot float32 over `label_names`, "condition" (the code), "report"
    (an English sentence built from the generation parameters) and "heart_rate_bpm" (60 /
    mean RR of the beats inside the record). `meta`: "age" (years, 18-90), "sex" ("M"/"F"),
    "height" (cm), "weight" (kg), as in the PTB-XL reader; a seeded ~10 % of each is None.

    Record i has condition `conditions[i % len(conditions)]` (balanced); splits are index
    blocks: the first 80 % train, the next 10 % val, the rest test. Ids are "syn_000042".
    """

    name: str = "synthetic"
    multilabel: bool = False

    def __init__(self, n_records: int = 200, *, seed: int = 0, fs: float = 500.0,
                 duration_s: float = 10.0, conditions: tuple[str, ...] = CONDITIONS,
                 noise_mv: float = 0.01) -> None:
        _check(_is_int(n_records) and n_records >= 1, "n_records", "an integer >= 1", n_records)
        _check(_is_int(seed) and seed >= 0, "seed", "an integer >= 0", seed)
        _check(_is_number(fs) and 100.0 <= fs <= 1000.0, "fs", "100..1000 Hz", fs)
        _check(_is_number(duration_s) and duration_s >= 2.0, "duration_s", ">= 2 s", duration_s)
        _check(_is_number(noise_mv) and noise_mv >= 0.0, "noise_mv", ">= 0 mV", noise_mv)
        conditions = (conditions,) if isinstance(conditions, str) else tuple(conditions)
        _check(len(conditions) > 0 and len(set(conditions)) == len(conditions)
               and all(c in CONDITIONS for c in conditions),
               "conditions", f"distinct names from {', '.join(CONDITIONS)}", conditions)
        self.n_records, self.seed, self.fs = int(n_records), int(seed), float(fs)
        self.duration_s, self.noise_mv = float(duration_s), float(noise_mv)
        self.label_names: tuple[str, ...] = conditions
        self.n_samples = int(round(self.duration_s * self.fs))

    def ids(self, split: str | None = None) -> list[str]:
        """Record ids in index order; `split` None, "train", "val" or "test" (80/10/10 blocks)."""
        check_split(split)
        n_train = int(round(0.8 * self.n_records))
        n_val = int(round(0.1 * self.n_records))
        bounds = {None: (0, self.n_records), "train": (0, n_train),
                  "val": (n_train, n_train + n_val), "test": (n_train + n_val, self.n_records)}
        lo, hi = bounds[split]
        return [f"syn_{i:06d}" for i in range(lo, hi)]

    def _index(self, record_id: str) -> int:
        text = str(record_id)
        digits = text[4:] if text.startswith("syn_") and text[4:].isascii() else ""
        if not (digits.isdigit() and int(digits) < self.n_records
                and text == f"syn_{int(digits):06d}"):
            raise DatasetError(f"synthetic: no record {record_id!r}; expected 'syn_NNNNNN' with "
                               f"0 <= N < {self.n_records}")
        return int(digits)

    def _streams(self, index: int) -> list[np.random.Generator]:
        """Independent generators for rhythm, morphology, noise and metadata of record `index`."""
        root = np.random.SeedSequence(self.seed, spawn_key=(index,))
        return [np.random.default_rng(s) for s in root.spawn(4)]

    def _generate(self, index: int) -> tuple[BeatPlan, list[np.random.Generator]]:
        streams = self._streams(index)
        condition = self.label_names[index % len(self.label_names)]
        return plan_beats(condition, self.duration_s, streams[0], streams[1]), streams

    def _labels(self, plan: BeatPlan) -> dict[str, Any]:
        target = np.array([c == plan.condition for c in self.label_names], dtype=np.float32)
        return {"target": target, "condition": plan.condition, "report": _report(plan),
                "heart_rate_bpm": float(plan.heart_rate_bpm)}

    def plan(self, record_id: str) -> BeatPlan:
        """The generation parameters of one record (R times, waves, dipoles, f-waves)."""
        return self._generate(self._index(record_id))[0]

    def labels(self, record_id: str) -> dict[str, Any]:
        """The labels of one record without rendering its signal."""
        return self._labels(self.plan(record_id))

    def read(self, record_id: str) -> Record:
        """One record: signal (12, duration_s * fs) float32 mV, leads I..V6 by name."""
        index = self._index(record_id)
        plan, streams = self._generate(index)
        signal = render(plan, self.fs, self.n_samples, self.noise_mv, streams[2])
        return Record(record_id, signal, self.fs, STANDARD_LEADS, self._labels(plan),
                      _meta(streams[3]), f"synthetic:seed={self.seed}:index={index}")

    def __len__(self) -> int:
        return self.n_records

    def __iter__(self) -> Iterator[Record]:
        return (self.read(rid) for rid in self.ids())


def condition_windows(n_records: int, seed: int, *, fs: float = 500.0, leads: tuple[str, ...] = ("I",),
                      preprocess: Any = None, duration_s: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Student inputs from the generator: preprocessed windows (n, n_leads, 1, window) float32 of
    `n_records` seeded records at `fs` Hz through the signal contract (`PreprocessConfig()` unless
    `preprocess` is given), and each window's condition index (n,) into CONDITIONS."""
    from edge_runtime.signal import PreprocessConfig, Preprocessor

    syn = Synthetic(n_records, seed=seed, fs=fs, duration_s=duration_s)
    pre = Preprocessor(preprocess or PreprocessConfig(), fs, leads)
    xs, ys = [], []
    for rid in syn.ids():
        rec = syn.read(rid)
        w = pre.process_record(rec.select(leads).signal, where=rid)
        xs.append(w.data)
        ys.append(np.full(len(w), int(np.argmax(rec.labels["target"]))))
    return np.concatenate(xs)[:, :, None, :].astype(np.float32), np.concatenate(ys)
