"""Evaluating a teacher encoder: embeddings, linear probes at label fractions, zero-shot scores,
Integrated-Gradients saliency figures and the summary files. Metrics live in `train.metrics`.

    emb = embed(encoder, split.windows())                       # (n_windows, embed_dim)
    scores, constant = linear_probe(emb_tr, y_tr, emb_te, multilabel=True)
    scores = zero_shot(emb_te, prompt_embeddings(text_model, CLASS_PROMPTS["ptbxl"], names))

scikit-learn, matplotlib and captum (the `train` extra) are imported inside the functions that use
them, so importing this module costs torch only. Everything here is CPU-friendly and seeded.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from edge_runtime.config import to_jsonable
from edge_runtime.errors import ConfigError, missing_extra

#: Plain-English class prompts for zero-shot scoring, per dataset (keys of `DATASET_NAMES`), several
#: per class (their embeddings are averaged). PTB-XL's follow its SCP statement descriptions (the
#: English half of the report text a text tower is trained on); the synthetic ones follow the
#: sentence `train.data.synthetic` writes for each condition; CinC 2017's describe its four labels.
CLASS_PROMPTS: dict[str, dict[str, tuple[str, ...]]] = {
    "ptbxl": {
        "NORM": ("normal ECG", "sinus rhythm, normal ECG without abnormalities"),
        "MI": ("myocardial infarction", "inferior myocardial infarction",
               "anteroseptal myocardial infarction", "pathological Q waves of an old myocardial infarction"),
        "STTC": ("ST/T change", "non-specific ST-T changes", "ischemic ST depression and T wave inversion"),
        "CD": ("conduction disturbance", "complete right bundle branch block", "complete left bundle branch block",
               "left anterior fascicular block", "first degree AV block"),
        "HYP": ("hypertrophy", "left ventricular hypertrophy", "right ventricular hypertrophy",
                "left atrial enlargement"),
    },
    "synthetic": {
        "NORM": ("Sinus rhythm, regular rhythm, normal QRS duration.", "normal sinus rhythm"),
        "AFIB": ("Atrial fibrillation, irregularly irregular rhythm, no P waves, fibrillatory waves.",
                 "atrial fibrillation"),
        "SBRAD": ("Sinus bradycardia, slow heart rate below 60 bpm, regular rhythm.", "sinus bradycardia"),
        "STACH": ("Sinus tachycardia, fast heart rate above 100 bpm, regular rhythm.", "sinus tachycardia"),
        "WQRS": ("Sinus rhythm, wide QRS complex, nonspecific intraventricular conduction delay.",
                 "wide QRS complex"),
    },
    "cinc2017": {
        "N": ("normal sinus rhythm", "regular sinus rhythm with normal P waves"),
        "A": ("atrial fibrillation", "irregularly irregular rhythm without P waves, atrial fibrillation"),
        "O": ("other abnormal rhythm, not atrial fibrillation", "ectopic beats or another arrhythmia"),
        "~": ("noisy recording, too noisy to classify", "ECG dominated by noise and motion artefact"),
    },
    "mitdb": {
        "AFIB": ("atrial fibrillation", "irregularly irregular rhythm without P waves, atrial fibrillation"),
    },
}


def _sklearn():
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:
        raise missing_extra("linear_probe", "sklearn", "train", exc.name) from None
    return LogisticRegression, StandardScaler


# ---------------------------------------------------------------------------------------- embeddings

def embed(encoder: nn.Module, windows: np.ndarray | Iterable[np.ndarray], batch_size: int = 256,
          device: str | torch.device = "cpu", channels: Sequence[int] | None = None) -> np.ndarray:
    """Encoder embeddings (n, embed_dim) float32, in eval mode without gradients, batch by batch
    (`train.engine.predict`).

    windows: an (n, C, T) array (a memory map is read one batch at a time) or an iterable of them,
    e.g. `ShardSplit.windows()`. channels: input channels to keep, in the encoder's lead order
    (e.g. `[shard_leads.index(l) for l in encoder.leads]`); None keeps all. The encoder's training
    mode is restored afterwards.
    """
    from train.engine import predict

    if batch_size < 1:
        raise ConfigError(f"embed: batch_size {batch_size}; expected >= 1")
    out: list[np.ndarray] = []
    for arr in [windows] if isinstance(windows, np.ndarray) else windows:
        if arr.ndim != 3:
            raise ConfigError(f"embed: windows of shape {arr.shape}; expected (n, leads, samples)")
        if len(arr):
            out.append(predict(encoder, arr, batch_size=batch_size, device=device, channels=channels))
    if not out:
        return np.zeros((0, int(getattr(encoder, "embed_dim", 0))), np.float32)
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------- linear probe

def linear_probe(train_emb: np.ndarray, train_y: np.ndarray, test_emb: np.ndarray, multilabel: bool,
                 C: float = 1.0, seed: int = 0, max_iter: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Logistic-regression probe on frozen embeddings -> (scores (n_test, K), constant (K,) bool).

    Embeddings are standardised with a StandardScaler fit on the training rows. multilabel: one
    binary L2 logistic regression per class, scores = P(class). Otherwise (one-hot targets) one
    multinomial regression, scores = class probabilities; training rows with no class set are dropped.
    A class whose label takes a single value in the training rows cannot be fit: its score is that
    constant (1 or 0) and `constant[k]` is True, so a report can flag it (its AUROC is then 0.5).
    """
    LogisticRegression, StandardScaler = _sklearn()
    train_emb, test_emb = np.asarray(train_emb, np.float64), np.asarray(test_emb, np.float64)
    y = np.asarray(train_y) > 0.5
    if y.ndim != 2 or len(y) != len(train_emb) or train_emb.ndim != 2 or test_emb.shape[1:] != train_emb.shape[1:]:
        raise ConfigError(f"linear_probe: train {train_emb.shape}, labels {y.shape}, test {test_emb.shape}; "
                          "expected (n, d), (n, K), (m, d)")
    if C <= 0:
        raise ConfigError(f"linear_probe: C {C}; expected > 0")
    scaler = StandardScaler().fit(train_emb)
    xtr, xte = scaler.transform(train_emb), scaler.transform(test_emb)
    n_cls = y.shape[1]
    scores = np.zeros((len(xte), n_cls))
    constant = np.zeros(n_cls, bool)
    if multilabel:
        for k in range(n_cls):
            if y[:, k].all() or not y[:, k].any():
                scores[:, k], constant[k] = float(y[:, k].any()), True
                continue
            clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed).fit(xtr, y[:, k])
            scores[:, k] = clf.predict_proba(xte)[:, 1]
        return scores, constant
    keep = y.any(axis=1)
    labels = y[keep].argmax(axis=1)
    present = np.unique(labels)
    constant[:] = True
    if len(present) == 1:
        scores[:, present[0]] = 1.0
        return scores, constant
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed).fit(xtr[keep], labels)
    scores[:, clf.classes_] = clf.predict_proba(xte)
    constant[clf.classes_] = False
    return scores, constant


def probe_module(encoder: nn.Module, train_emb: np.ndarray, train_y: np.ndarray, seed: int = 0,
                 max_iter: int = 2000) -> nn.Module:
    """encoder -> standardise -> one logistic regression per class, folded into one torch module.

    The same probe as `linear_probe` (multilabel form), as (N, C, T) -> (N, K) logits, so
    gradient-based saliency can run through it. A class with one label value gets zero weights.
    """
    LogisticRegression, StandardScaler = _sklearn()

    scaler = StandardScaler().fit(train_emb)
    z = scaler.transform(train_emb)
    weights, biases = [], []
    for k in range(train_y.shape[1]):
        yk = train_y[:, k] > 0.5
        if yk.all() or not yk.any():
            weights.append(np.zeros(z.shape[1]))
            biases.append(0.0)
            continue
        clf = LogisticRegression(max_iter=max_iter, random_state=seed).fit(z, yk)
        weights.append(clf.coef_[0])
        biases.append(float(clf.intercept_[0]))
    head = nn.Linear(z.shape[1], len(weights))
    with torch.no_grad():
        w = torch.tensor(np.stack(weights) / scaler.scale_[None, :], dtype=torch.float32)
        head.weight.copy_(w)
        head.bias.copy_(torch.tensor(biases, dtype=torch.float32) - w @ torch.tensor(scaler.mean_, dtype=torch.float32))
    return nn.Sequential(encoder, head).eval()


def label_fraction(y: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted row indices of a seeded `fraction` of the training records (1.0: all of them).

    Size: round(fraction * n), at least 1. Coverage: every class with a positive (and a negative)
    in `y` gets at least one positive (and one negative) in the subset, so each per-class probe can
    be fit; those picks can make a tiny subset slightly larger than asked. One permutation per seed
    decides both the picks and the fill, so for one seed the subsets are nested (1 % in 10 % in 100 %).
    Pass one row per record; for windows take `np.isin(split.record, records[chosen])`.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ConfigError(f"label_fraction: fraction {fraction!r}; expected 0 < fraction <= 1")
    yb = np.asarray(y) > 0.5
    if yb.ndim == 1:
        yb = yb[:, None]
    n = len(yb)
    if fraction == 1 or n == 0:
        return np.arange(n)
    perm = np.random.default_rng(seed).permutation(n)
    picks: list[int] = []
    for k in range(yb.shape[1]):
        for want in (True, False):
            hits = np.flatnonzero(yb[perm, k] == want)
            if len(hits) and not any(yb[i, k] == want for i in picks):
                picks.append(int(perm[hits[0]]))
    size = max(1, int(round(fraction * n)))
    fill = perm[~np.isin(perm, picks)][:max(0, size - len(picks))]
    return np.sort(np.r_[np.array(picks, dtype=np.int64), fill]).astype(np.int64)


# ---------------------------------------------------------------------------------------- zero shot

def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def zero_shot(ecg_emb: np.ndarray, prompt_emb: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Cosine similarity (n, K) between ECG embeddings and one prototype per class.

    prompt_emb: (K, d), (K, P, d) or a list of K arrays (P_k, d) when a class has several prompts:
    a class prototype is the mean of its unit-norm prompt embeddings, renormalised. Inputs are
    normalised here too, so already-normalised embeddings pass through unchanged.
    """
    ecg = _unit(np.asarray(ecg_emb, np.float64))
    if isinstance(prompt_emb, np.ndarray) and prompt_emb.ndim == 2:
        protos = _unit(prompt_emb.astype(np.float64))
    else:
        protos = np.stack([_unit(_unit(np.asarray(p, np.float64).reshape(-1, ecg.shape[1])).mean(axis=0))
                           for p in prompt_emb])
    if ecg.ndim != 2 or protos.shape[1] != ecg.shape[1]:
        raise ConfigError(f"zero_shot: ECG embeddings {ecg.shape} and prompts {protos.shape}; expected the same width")
    return ecg @ protos.T


def prompt_embeddings(text_model: nn.Module, prompts: Mapping[str, Sequence[str]],
                      label_names: Sequence[str]) -> list[np.ndarray]:
    """Unit-norm text embeddings (P_k, d) of each class's prompts, in `label_names` order."""
    missing = [n for n in label_names if n not in prompts]
    if missing:
        raise ConfigError(f"zero_shot: no prompts for classes {missing}; prompts cover {sorted(prompts)}")
    was_training = text_model.training
    text_model.eval()
    try:
        with torch.inference_mode():
            return [_unit(text_model(list(prompts[n])).float().cpu().numpy()) for n in label_names]
    finally:
        text_model.train(was_training)


# ---------------------------------------------------------------------------------------- saliency

def saliency(model: nn.Module, x: np.ndarray, target: int, steps: int = 64) -> np.ndarray:
    """Integrated-Gradients attribution (C, T) of logit `target` for one window x (C, T).

    Sundararajan M, Taly A, Yan Q. "Axiomatic attribution for deep networks." ICML 2017, via
    captum. The baseline is all zeros: for z-scored windows that is every lead at its mean, a
    flat line. `model` maps (1, C, T) -> (1, K) logits (e.g. an encoder plus its probe head).
    """
    try:
        from captum.attr import IntegratedGradients
    except ImportError as exc:
        raise missing_extra("saliency", "captum", "train", exc.name) from None
    arr = np.asarray(x, np.float32)
    if arr.ndim != 2:
        raise ConfigError(f"saliency: window of shape {arr.shape}; expected (leads, samples)")
    was_training = model.training
    model.eval()
    try:
        inp = torch.from_numpy(arr.copy())[None].requires_grad_(True)
        attr = IntegratedGradients(model).attribute(inp, baselines=torch.zeros_like(inp), target=int(target),
                                                    n_steps=int(steps), internal_batch_size=min(int(steps), 64))
    finally:
        model.train(was_training)
    return attr[0].detach().cpu().numpy()


def render_saliency_png(x: np.ndarray, attribution: np.ndarray, leads: Sequence[str], fs: float,
                        path: str | Path, title: str = "") -> Path:
    """One row per lead: the trace in black over a white-to-red band whose intensity is |attribution|.

    The colour scale is shared by all leads (0 to the largest |attribution| of the window), so a
    pale lead really mattered less. Uses matplotlib's Agg canvas without pyplot (no global state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure

    x, attr = np.asarray(x, float), np.abs(np.asarray(attribution, float))
    if x.ndim != 2 or x.shape != attr.shape or len(leads) != x.shape[0]:
        raise ConfigError(f"render_saliency_png: window {x.shape}, attribution {attr.shape}, {len(leads)} leads; "
                          "expected (C, T), (C, T) and C names")
    n_leads, n = x.shape
    t = np.arange(n + 1) / fs  # cell edges for the band
    vmax = float(attr.max()) or 1.0
    cmap = LinearSegmentedColormap.from_list("saliency", ["white", "#ff4040"])  # light enough to read the trace
    fig = Figure(figsize=(10, 0.9 * n_leads + 0.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_leads, 1, sharex=True, squeeze=False)[:, 0]
    for ax, lead, trace, a in zip(axes, leads, x, attr):
        lo, hi = float(trace.min()), float(trace.max())
        pad = 0.1 * (hi - lo) or 1.0
        ax.pcolormesh(t, [lo - pad, hi + pad], a[None, :], cmap=cmap, vmin=0.0, vmax=vmax,
                      shading="flat", rasterized=True)
        ax.plot(t[:-1], trace, color="black", linewidth=0.7)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_yticks([])
        ax.set_ylabel(str(lead), rotation=0, ha="right", va="center")
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


# ---------------------------------------------------------------------------------------- summary

def fmt_ci(entry: Mapping[str, Any] | None) -> str:
    """"0.873 [0.812, 0.921]" from a metric entry of `bootstrap_scores`; "n/a" when undefined."""
    if not entry or entry.get("value") is None:
        return "n/a"
    text = f"{entry['value']:.3f}"
    ci = entry.get("ci")
    return text + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else " [n/a]")


def _json_default(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def _clean(obj: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and not math.isfinite(float(obj)):
        return None
    return obj


def _md_row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _md_table(header: Sequence[str], rows: list[list[Any]]) -> list[str]:
    return [_md_row(header), _md_row("---" for _ in header)] + [_md_row(r) for r in rows]


def _gap_text(gap: Mapping[str, Any]) -> str:
    if gap.get("value") is None:
        return "n/a"
    return f"{gap['value']:.3f} ({gap['max_group']} vs {gap['min_group']})"


def summary_markdown(results: Mapping[str, Any]) -> str:
    """The Markdown summary of `write_summary` (see there for the expected `results` layout)."""
    runs = list(results.get("runs", []))
    lines = [f"# {results.get('title', 'Evaluation')}", ""]
    if results.get("dataset"):
        lines += [f"Dataset: {results['dataset']}. Numbers: point estimate [95 % bootstrap CI over records].", ""]
    macro, per_class, fair = [], [], []
    for run in runs:
        m, s = run.get("model", "?"), run.get("setting", "")
        mt = run.get("metrics", {})
        macro.append([m, s, mt.get("n", ""), fmt_ci(mt.get("auroc", {}).get("macro")),
                      fmt_ci(mt.get("prauc", {}).get("macro"))])
        for name, entry in mt.get("auroc", {}).get("classes", {}).items():
            pr = mt.get("prauc", {}).get("classes", {}).get(name)
            prev = entry.get("prevalence")
            note = entry.get("reason", "") + (" constant probe score" if name in run.get("constant", ()) else "")
            per_class.append([m, s, name, fmt_ci(entry), fmt_ci(pr), "" if prev is None else f"{prev:.3f}", note.strip()])
        for gname, g in run.get("fairness", {}).get("groupings", {}).items():
            for name, c in g.get("classes", {}).items():
                if "tpr_gap" in c:
                    fair.append([m, s, gname, name, _gap_text(c["tpr_gap"]), _gap_text(c["fpr_gap"]), g.get("n_missing", 0)])
    lines += ["## Macro", ""] + _md_table(["model", "setting", "records", "AUROC", "PRAUC"], macro) + [""]
    lines += ["## Per class", ""] + _md_table(["model", "setting", "class", "AUROC", "PRAUC", "prevalence", "note"],
                                              per_class) + [""]
    if fair:
        lines += ["## Fairness gaps (max - min over groups, at the validation threshold)", ""]
        lines += _md_table(["model", "setting", "grouping", "class", "TPR gap", "FPR gap", "missing"], fair) + [""]
    return "\n".join(lines)


def write_summary(results: Mapping[str, Any], json_path: str | Path, md_path: str | Path) -> tuple[Path, Path]:
    """Write everything to JSON and a short Markdown summary; return both paths.

    results: {"title"?, "dataset"?, "runs": [{"model", "setting", "metrics": bootstrap_scores(...),
    "fairness"?: fairness_gaps(...), "constant"?: [class names flagged by linear_probe]}], ...};
    any other keys go to the JSON unchanged. NaN becomes null.
    """
    json_path, md_path = Path(json_path), Path(md_path)
    for p in (json_path, md_path):
        p.parent.mkdir(parents=True, exist_ok=True)
    data = _clean(json.loads(json.dumps(to_jsonable(results), default=_json_default)))
    json_path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    md_path.write_text(summary_markdown(results) + "\n", encoding="utf-8")
    return json_path, md_path
