"""The teacher evaluation protocol behind `ecg-edge evaluate`: pretrained teachers (and the same
encoders randomly initialised) on held-out data.

For every model: frozen embeddings -> logistic-regression linear probe trained on 1 %, 10 % and
100 % of the training records; optional fine-tuning of the whole encoder (supervised objective,
through the one training loop) on the same fractions; zero-shot from class prompts for ECG-text
teachers (clip, fgclep). Every figure is per record (window scores averaged, labels OR-ed) on the
evaluation splits (PTB-XL: folds 9 and 10), AUROC and PRAUC per class and macro with bootstrap
95 % CIs. Fairness: TPR and FPR gaps by sex and age group at thresholds chosen on out-of-fold
probe scores of the training records (never on the evaluation records). Saliency: integrated
gradients of the 100 % probe for one evaluation record, rendered over its leads.
Writes evaluation.json (every figure) and evaluation.md (tables). The pieces (embeddings, probes,
zero-shot, saliency, summary files) are `train.evaluate`'s, the metrics `train.metrics`'s.
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from edge_runtime.backends import probabilities
from edge_runtime.errors import ConfigError
from train.config import TrainConfig
from train.data.shards import open_shards
from train.engine import fit, predict, seed_everything
from train.evaluate import (CLASS_PROMPTS, embed, label_fraction, linear_probe, probe_module, prompt_embeddings,
                            render_saliency_png, saliency, write_summary, zero_shot)
from train.loader import WindowSet, read_records
from train.metrics import aggregate_by_record, fairness_gaps, meta_groups, operating_thresholds, score_records
from train.models import create_model
from train.objectives import build_objective
from train.pretrain import load_teacher


@dataclass(frozen=True)
class EvalOptions:
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    eval_splits: tuple[str, ...] = ("val", "test")
    random_init: bool = True
    finetune: bool = False
    finetune_epochs: int = 10
    zero_shot: bool = True
    fairness: bool = True
    saliency: bool = True
    n_boot: int = 1000
    seed: int = 0
    cv_folds: int = 5


class _Split:
    """Windows, labels and record rows of one or more shard splits, concatenated."""

    def __init__(self, shards: Path, names: Sequence[str], leads: Sequence[str]) -> None:
        sets = [WindowSet(shards, s, leads) for s in names]
        self.x = np.concatenate([np.concatenate([np.asarray(w) for w in s.split.windows()]) if len(s) else
                                 np.zeros((0, len(s.split.flat[0]) if len(s.split.flat) else 0, 0), np.float32)
                                 for s in sets])
        self.y = np.concatenate([s.targets for s in sets])
        self.record = np.concatenate([s.record_rows for s in sets])
        self.channels = sets[0]._channels


def _oof_thresholds(emb: np.ndarray, y: np.ndarray, record: np.ndarray, multilabel: bool, opts: EvalOptions) -> np.ndarray:
    """Youden thresholds from out-of-fold probe scores over the training records (record-level folds)."""
    ids = np.unique(record)
    fold_of = np.random.default_rng(opts.seed).permutation(len(ids)) % opts.cv_folds
    fold = fold_of[np.searchsorted(ids, record)]
    oof = np.zeros(y.shape)
    for f in range(opts.cv_folds):
        test = fold == f
        oof[test], _ = linear_probe(emb[~test], y[~test], emb[test], multilabel, seed=opts.seed)
    _, s = aggregate_by_record(oof, record, "mean")
    _, t = aggregate_by_record(y, record, "max")
    return operating_thresholds(t, s, rule="youden")


def _scored(name: str, setting: str, scores: np.ndarray, ev: _Split, label_names: tuple[str, ...],
            opts: EvalOptions, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    metrics = score_records(scores, ev.y, ev.record, label_names, n_boot=opts.n_boot, seed=opts.seed)["ranking"]
    return {"model": name, "setting": setting, "metrics": metrics} | (extra or {})


def _finetune(encoder: nn.Module, shards: Path, subset: np.ndarray, ev: _Split, n_classes: int, multilabel: bool,
              opts: EvalOptions, device: str) -> np.ndarray:
    """Train encoder + linear head (supervised objective) on the subset; class scores for `ev`."""
    seed_everything(opts.seed)
    model = build_objective("supervised", copy.deepcopy(encoder), None, n_classes=n_classes, multilabel=multilabel)
    data = WindowSet(shards, "train", encoder.leads, subset=subset)
    cfg = TrainConfig(epochs=opts.finetune_epochs, batch_size=min(32, len(data)), lr=3e-4, seed=opts.seed,
                      device=device, warmup_frac=0.1)
    fit(model, data, cfg, None, meta={"task": "finetune"}, progress=False)
    return probabilities(predict(model, ev.x, batch_size=128, channels=ev.channels, forward=model.logits), multilabel)


def _models(checkpoints: Sequence[Path], random_init: bool) -> list[tuple[str, nn.Module, dict[str, Any], nn.Module | None]]:
    """(name, encoder, meta, objective module or None) per teacher, then each distinct encoder at random init."""
    out, seen = [], set()
    for path in checkpoints:
        objective, meta = load_teacher(path)
        out.append((f"{meta['objective']}:{meta['encoder']['name']}", objective.encoder, meta, objective))
    if random_init:
        for _, _, meta, _ in list(out):
            key = repr(meta["encoder"])
            if key in seen:
                continue
            seen.add(key)
            torch.manual_seed(0)
            enc = create_model(meta["encoder"]["name"], **meta["encoder"]["kwargs"]).eval()
            out.append((f"random-init:{meta['encoder']['name']}", enc, meta | {"objective": "random-init"}, None))
    return out


def run_evaluate(checkpoints: Sequence[str | Path], shards: str | Path, out: str | Path, opts: EvalOptions,
                 device: str = "cpu") -> dict[str, Any]:
    """Evaluate each checkpoint (and its encoder at random init); write evaluation.json and .md."""
    shards, out = Path(shards), Path(out)
    if not checkpoints:
        raise ConfigError("--checkpoint: give at least one pretraining checkpoint")
    info, splits = open_shards(shards)
    for name in ("train", *opts.eval_splits):
        if name not in splits or len(splits[name]) == 0:
            raise ConfigError(f"{shards}: split {name!r} is empty or missing; evaluation needs train and "
                              f"{', '.join(opts.eval_splits)} windows")
    label_names, multilabel = tuple(info["label_names"]), bool(info["multilabel"])
    records = read_records(shards)
    dataset = info["source"].split(":", 1)[0]
    runs, notes, saliency_path = [], [], None
    for name, encoder, meta, objective in _models([Path(c) for c in checkpoints], opts.random_init):
        if meta.get("data_hash") and objective is not None and meta["shards"] != str(shards.resolve()):
            notes.append(f"{name}: pretrained on {meta['shards']}, evaluated on {shards}")
        print(f"evaluate {name}: embedding", file=sys.stderr)
        encoder.to(device)
        tr, ev = _Split(shards, ["train"], encoder.leads), _Split(shards, opts.eval_splits, encoder.leads)
        e_tr = embed(encoder, tr.x, channels=tr.channels, device=device)
        e_ev = embed(encoder, ev.x, channels=ev.channels, device=device)
        rec_ids, rec_y = aggregate_by_record(tr.y, tr.record, "max")
        for frac in opts.fractions:
            chosen = rec_ids[label_fraction(rec_y, frac, seed=opts.seed)]
            subset = np.flatnonzero(np.isin(tr.record, chosen))
            scores, const = linear_probe(e_tr[subset], tr.y[subset], e_ev, multilabel, seed=opts.seed)
            extra = {"fraction": frac, "train_records": len(chosen),
                     "constant": [label_names[k] for k in np.flatnonzero(const)]}
            if frac == 1.0 and opts.fairness:
                thr = _oof_thresholds(e_tr, tr.y, tr.record, multilabel, opts)
                rid, s = aggregate_by_record(scores, ev.record, "mean")
                _, y = aggregate_by_record(ev.y, ev.record, "max")
                groups = meta_groups([records[int(r)].get("meta") or {} for r in rid])
                extra["fairness"] = fairness_gaps(y, s, thr, groups, label_names=label_names)
            runs.append(_scored(name, f"linear probe {frac:.0%}", scores, ev, label_names, opts, extra))
            if opts.finetune:
                ft = _finetune(encoder, shards, subset, ev, len(label_names), multilabel, opts, device)
                runs.append(_scored(name, f"fine-tune {frac:.0%}", ft, ev, label_names, opts,
                                    {"fraction": frac, "train_records": len(chosen), "epochs": opts.finetune_epochs}))
        if opts.zero_shot and objective is not None and hasattr(objective, "encode_text") and dataset in CLASS_PROMPTS:
            z = predict(objective, ev.x, batch_size=128, device=device, channels=ev.channels,
                        forward=objective.encode_ecg)
            prompts = prompt_embeddings(_TextInJointSpace(objective), CLASS_PROMPTS[dataset], label_names)
            runs.append(_scored(name, "zero-shot", zero_shot(z, prompts), ev, label_names, opts,
                                {"prompts": {k: list(CLASS_PROMPTS[dataset][k]) for k in label_names}}))
        if opts.saliency and saliency_path is None and objective is not None:
            saliency_path = _saliency_png(name, encoder, e_tr, tr, ev, label_names, multilabel, info, out, opts)
    results = {"title": f"Teacher evaluation on {info['source']}", "dataset": info["source"],
               "eval_splits": list(opts.eval_splits), "label_names": list(label_names), "runs": runs,
               "options": {k: getattr(opts, k) for k in opts.__dataclass_fields__}, "notes": notes,
               "saliency_png": str(saliency_path) if saliency_path else None}
    out.mkdir(parents=True, exist_ok=True)
    write_summary(results, out / "evaluation.json", out / "evaluation.md")
    return results


class _TextInJointSpace(nn.Module):
    """The objective's text side as a text model for `prompt_embeddings` (joint-space embeddings)."""

    def __init__(self, objective: nn.Module) -> None:
        super().__init__()
        self.objective = objective

    def forward(self, texts: list[str]) -> torch.Tensor:
        return self.objective.encode_text(texts)


def _saliency_png(name: str, encoder: nn.Module, e_tr: np.ndarray, tr: _Split, ev: _Split,
                  label_names: tuple[str, ...], multilabel: bool, info: dict[str, Any], out: Path,
                  opts: EvalOptions) -> Path | None:
    """IG of the 100 % probe for the evaluation window most confidently positive for a non-NORM class."""
    model = probe_module(copy.deepcopy(encoder).cpu(), e_tr, tr.y, seed=opts.seed)
    order = [k for k, n in enumerate(label_names) if n not in ("NORM", "N")] or list(range(len(label_names)))
    for k in order:
        pos = np.flatnonzero(ev.y[:, k] > 0.5)
        if len(pos) == 0:
            continue
        logit = predict(model, ev.x[pos], batch_size=len(pos), channels=ev.channels)[:, k]
        i = int(pos[int(np.argmax(logit))])
        window = np.ascontiguousarray(ev.x[i][ev.channels])
        attr = saliency(model, window, k)
        path = out / f"saliency_{label_names[k]}.png"
        out.mkdir(parents=True, exist_ok=True)
        return render_saliency_png(window, attr, encoder.leads, info["spec"]["fs"], path,
                                   title=f"{name}: integrated gradients for {label_names[k]} "
                                         f"(record row {int(ev.record[i])}, probe logit {logit.max():.2f})")
    return None
