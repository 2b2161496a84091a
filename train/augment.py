"""Batched, seeded augmentations of preprocessed ECG windows (N, C, T) for the teacher objectives.

Every function takes an explicit `torch.Generator`; the same generator state gives the same output.
Random numbers are drawn on the generator's device and moved to the signal's, so a CPU generator
gives the same augmentation whether `x` lives on the CPU or a GPU (a generator on the GPU avoids the
copy). No function loops over samples in Python.

Ranges are in the units of the signal contract's output: each lead of each window is z-scored, so an
amplitude of 0.1 is a tenth of that lead's standard deviation (the QRS complexes dominate it; a noise
std of 0.1 is an SNR of about 20 dB). docs/augmentations.md says why each range is plausible.

    cfg = AugmentConfig(noise_std=(0.01, 0.05), lead_dropout=0.2)
    gen = torch.Generator().manual_seed(0)
    view = augment(x, cfg, gen)                   # same shape as x
    short = crop(view, 500, gen)                  # (N, C, 500), a random 5 s slice per sample at 100 Hz
    lead_i = keep_leads(x, STANDARD_LEADS, "I")   # every other lead zeroed
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Sequence

import torch

from edge_runtime.errors import ConfigError
from edge_runtime.spec import FS_MAX_HZ, FS_MIN_HZ, canonical_lead

__all__ = [
    "AugmentConfig", "augment", "scale_amplitude", "add_baseline_wander", "add_gaussian_noise",
    "add_powerline", "add_emg", "drop_leads", "crop", "keep_leads",
]

#: (field, low, high) bounds that AugmentConfig accepts; a (low, high) field must also have low <= high.
_BOUNDS: dict[str, tuple[float, float]] = {
    "fs": (FS_MIN_HZ, FS_MAX_HZ),
    "scale": (0.25, 4.0),
    "wander_amp": (0.0, 2.0),
    "wander_hz": (0.01, 2.0),
    "wander_components": (1, 4),
    "noise_std": (0.0, 1.0),
    "powerline_amp": (0.0, 1.0),
    "powerline_hz": (40.0, 70.0),
    "emg_std": (0.0, 1.0),
    "lead_dropout": (0.0, 0.95),
}


@dataclass(frozen=True)
class AugmentConfig:
    """What `augment` applies, in this order; a field at its "off" value disables that step.

    fs: sampling rate of the windows, Hz.
    scale: (low, high) per-sample, per-lead gain, log-uniform; off: (1, 1).
    wander_amp: largest baseline-wander amplitude per lead and sinusoid (z units); off: 0.
    wander_hz: (low, high) frequency range of the wander sinusoids, Hz (respiration 0.1-0.5 Hz,
        slow electrode drift below that).
    wander_components: each sample gets 1..wander_components sinusoids (uniform count).
    powerline_amp: largest mains-interference amplitude per lead (z units); off: 0 (the default: the
        contract's band-pass removes mains, so it is only useful to mimic a device that does not).
    powerline_hz: mains frequency, 50 or 60 Hz (must be <= fs / 2, or it would alias).
    emg_std: largest muscle-noise std (z units) of a high-frequency burst; off: 0 (the default).
    noise_std: (low, high) std of additive white Gaussian noise, uniform per sample; off: (0, 0).
    lead_dropout: probability of zeroing each lead (a lead-off electrode); never all leads of a sample.
    """

    fs: float = 100.0
    scale: tuple[float, float] = (0.8, 1.25)
    wander_amp: float = 0.3
    wander_hz: tuple[float, float] = (0.05, 0.5)
    wander_components: int = 2
    powerline_amp: float = 0.0
    powerline_hz: float = 50.0
    emg_std: float = 0.0
    noise_std: tuple[float, float] = (0.01, 0.1)
    lead_dropout: float = 0.1

    def __post_init__(self) -> None:
        for f in fields(self):
            value, (lo, hi) = getattr(self, f.name), _BOUNDS[f.name]
            where = f"augment.{f.name}"
            if f.name in ("scale", "wander_hz", "noise_std"):
                if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
                    raise ConfigError(f"{where}: {value!r}; expected a pair (low, high) with {lo} <= low <= high <= {hi}")
                pair = tuple(_number(v, where) for v in value)
                if not lo <= pair[0] <= pair[1] <= hi:
                    raise ConfigError(f"{where}: {list(value)}; expected {lo} <= low <= high <= {hi}")
                object.__setattr__(self, f.name, pair)  # TOML gives lists; keep the frozen config hashable
            elif f.name == "wander_components":
                if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                    raise ConfigError(f"{where}: {value!r}; expected an integer from {lo} to {hi}")
            else:
                v = _number(value, where)
                if not lo <= v <= hi:
                    raise ConfigError(f"{where}: {value!r}; expected {lo} <= value <= {hi}")
                object.__setattr__(self, f.name, v)
        if self.powerline_hz > self.fs / 2:
            raise ConfigError(f"augment.powerline_hz: {self.powerline_hz} Hz; expected <= fs / 2 = {self.fs / 2} Hz"
                              " (a higher frequency aliases)")


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r}; expected a finite number")
    return float(value)


def _uniform(gen: torch.Generator, shape: tuple[int, ...], lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
    """U(lo, hi) of `shape`, drawn on the generator's device, returned on `like`'s device and dtype."""
    u = torch.rand(shape, generator=gen, device=gen.device)
    return (lo + (hi - lo) * u).to(like.device, like.dtype)


def _normal(gen: torch.Generator, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=gen, device=gen.device).to(like.device, like.dtype)


def _time(x: torch.Tensor, fs: float) -> torch.Tensor:
    """(T,) sample times in seconds."""
    return torch.arange(x.shape[-1], device=x.device, dtype=x.dtype) / fs


def scale_amplitude(x: torch.Tensor, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    """Multiply each lead of each sample by a gain drawn log-uniformly from [low, high]."""
    n, c, _ = x.shape
    log_gain = _uniform(gen, (n, c, 1), math.log(low), math.log(high), x)
    return x * log_gain.exp()


def add_baseline_wander(x: torch.Tensor, amp: float, hz: tuple[float, float], fs: float,
                        gen: torch.Generator, components: int = 2) -> torch.Tensor:
    """Add a sum of 1..`components` slow sinusoids (one frequency and phase per sample and sinusoid,
    shared by the leads as respiration is; amplitude U(-amp, amp) per lead, as each lead sees it
    differently)."""
    n, c, _ = x.shape
    freq = _uniform(gen, (n, components, 1), hz[0], hz[1], x)
    phase = _uniform(gen, (n, components, 1), 0.0, 2 * math.pi, x)
    amps = _uniform(gen, (n, c, components), -amp, amp, x)
    count = torch.randint(1, components + 1, (n, 1, 1), generator=gen, device=gen.device).to(x.device)
    active = torch.arange(components, device=x.device).view(1, 1, -1) < count       # (N, 1, K)
    waves = torch.sin(2 * math.pi * freq * _time(x, fs) + phase)                    # (N, K, T)
    return x + torch.einsum("nck,nkt->nct", amps * active, waves)


def add_gaussian_noise(x: torch.Tensor, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    """Add white Gaussian noise whose std is drawn uniformly from [low, high] per sample."""
    n = x.shape[0]
    std = _uniform(gen, (n, 1, 1), low, high, x)
    return x + std * _normal(gen, tuple(x.shape), x)


def add_powerline(x: torch.Tensor, amp: float, hz: float, fs: float, gen: torch.Generator) -> torch.Tensor:
    """Add mains interference at `hz`: one phase per sample, amplitude U(0, amp) per lead."""
    n, c, _ = x.shape
    phase = _uniform(gen, (n, 1, 1), 0.0, 2 * math.pi, x)
    amps = _uniform(gen, (n, c, 1), 0.0, amp, x)
    return x + amps * torch.sin(2 * math.pi * hz * _time(x, fs) + phase)


def add_emg(x: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    """Add a muscle-noise burst: white noise high-passed by a first difference (most power near
    fs / 2), std U(0, std) per lead, on for one contiguous stretch of 10-100 % of the window per sample."""
    n, c, t = x.shape
    white = _normal(gen, (n, c, t + 1), x)
    hf = (white[..., 1:] - white[..., :-1]) / math.sqrt(2.0)                        # unit variance
    gain = _uniform(gen, (n, c, 1), 0.0, std, x)
    length = _uniform(gen, (n, 1, 1), 0.1 * t, float(t), x)
    start = _uniform(gen, (n, 1, 1), 0.0, 1.0, x) * (t - length)
    pos = torch.arange(t, device=x.device, dtype=x.dtype)
    burst = (pos >= start) & (pos < start + length)
    return x + gain * hf * burst


def drop_leads(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Zero each lead with probability `p`; where that would zero every lead of a sample, one lead
    drawn uniformly stays (so a 1-lead window is never dropped)."""
    n, c, _ = x.shape
    u = torch.rand((n, c), generator=gen, device=gen.device)
    rescue = torch.randint(0, c, (n,), generator=gen, device=gen.device)
    drop = u < p
    all_dropped = drop.all(dim=1)
    drop[all_dropped, rescue[all_dropped]] = False
    return x * (~drop).to(x.device, x.dtype).unsqueeze(-1)


def crop(x: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
    """(N, C, length): a contiguous slice of each sample, its start uniform over the valid starts."""
    n, c, t = x.shape
    if not 0 < length <= t:
        raise ConfigError(f"crop: length {length} samples; expected 1 to the window length {t}")
    start = torch.randint(0, t - length + 1, (n, 1, 1), generator=gen, device=gen.device).to(x.device)
    index = (start + torch.arange(length, device=x.device)).expand(n, c, length)
    return torch.gather(x, 2, index)


def keep_leads(x: torch.Tensor, leads_all: Sequence[str], keep: str | Sequence[str]) -> torch.Tensor:
    """Zero every channel of `x` except the named leads (a single-lead view on a 12-lead encoder).

    `leads_all` names the channels of `x` in order; names are canonicalised ("avr" -> "aVR")."""
    names = [canonical_lead(n, where="keep_leads.leads_all") for n in leads_all]
    wanted = [canonical_lead(k, where="keep_leads.keep") for k in ([keep] if isinstance(keep, str) else keep)]
    if x.shape[1] != len(names):
        raise ConfigError(f"keep_leads: x has {x.shape[1]} channels but leads_all names {len(names)}")
    missing = [k for k in wanted if k not in names]
    if missing:
        raise ConfigError(f"keep_leads.keep: {missing} not in the leads {names}")
    mask = torch.tensor([n in wanted for n in names], device=x.device, dtype=x.dtype)
    return x * mask.view(1, -1, 1)


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Apply `cfg`'s augmentations to a batch (N, C, T): gain, wander, mains, EMG, noise, then lead
    dropout last so that a dropped lead is exactly zero (as a missing lead is in the data)."""
    if x.ndim != 3:
        raise ConfigError(f"augment: x has shape {tuple(x.shape)}; expected (N, C, T)")
    if cfg.scale != (1.0, 1.0):
        x = scale_amplitude(x, *cfg.scale, gen)
    if cfg.wander_amp > 0:
        x = add_baseline_wander(x, cfg.wander_amp, cfg.wander_hz, cfg.fs, gen, cfg.wander_components)
    if cfg.powerline_amp > 0:
        x = add_powerline(x, cfg.powerline_amp, cfg.powerline_hz, cfg.fs, gen)
    if cfg.emg_std > 0:
        x = add_emg(x, cfg.emg_std, gen)
    if cfg.noise_std[1] > 0:
        x = add_gaussian_noise(x, *cfg.noise_std, gen)
    if cfg.lead_dropout > 0:
        x = drop_leads(x, cfg.lead_dropout, gen)
    return x
