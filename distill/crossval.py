"""Choices by cross-validation over the training records, the test part scored once: `ecg-edge cv`.

The pool (`[cv] pool`: the train and validation splits) is cut into k folds by record: SHA-256 of
the patient id where the dataset gives one (PTB-XL), else of the record id (CinC 2017), so every
window of a record, and every record of a patient, sits in one fold; the same folds on every
machine. For each candidate configuration (`[cv] candidates`: `[train]` / `[distill]` overrides)
the student is distilled k times, each time on the other folds, and scores its held-out fold:
out-of-fold (OOF) window probabilities for every pool record, made record scores by each record rule.

Choices made on those OOF scores, never on the test part:

- the configuration, the record rule (mean or max of the window probabilities) and the threshold
  rule (single-label: per-class thresholds tuned for the
  challenge / macro F1 of argmax(p / t), or plain argmax; multi-label: Youden's J, best F1, or
  0.5), by the **cross-fitted** decision score: each fold's records are decided with thresholds
  chosen on the other folds' OOF scores, so the CV figure of a rule includes the noise of choosing
  its thresholds;
- the shipped thresholds: the chosen rule on all OOF records of the chosen configuration;
- the abstention bands (`edge_runtime.abstain.choose_bands`): each fold's student of the chosen
  configuration is quantized as it ships (PT2E PTQ, LiteRT int8, calibrated on 512 windows of its
  own training folds) and scores its held-out fold on LiteRT; the bands come from those int8 OOF
  record scores against the float ones, at the shipped thresholds.

The teacher is the one given; it was trained on the train split, so it has seen the held-out
fold's train records (not its validation ones). The student never sees its held-out fold, but
its soft targets come from a model that did: the OOF figures can be slightly optimistic, and
the test part (which neither saw) is the figure to quote.

With `[cv] final`, the chosen configuration is trained once more on the whole pool into
OUT/final/distilled (`distill.distill.distill_students`, `decision` in its checkpoint meta) and
scored once on the test part; `ecg-edge export --student OUT/final/distilled` then ships the
OOF thresholds and bands in every manifest and scores each artifact on the test part, once.
The record rule is chosen too (`[cv] record_rules`): a record's window probabilities become its
scores by their mean, or by their max over windows (AF that shows in one window of a long record
is not averaged away); where every record has one window the two are the same and only the mean
is scored. Also reported: the paired bootstrap difference of the chosen (configuration, rule) against every other one
on the same OOF records ("paired"). OUT/cv.json holds every figure, OUT/oof.npz the OOF record
scores of every candidate. A stopped run started again reuses the folds it finished.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from distill.config import CV_DISTILL_KEYS, CV_TRAIN_KEYS, CvConfig, DistillConfig
from edge_runtime.errors import ConfigError

#: threshold rules the cross-validation chooses between
SINGLE_LABEL_RULES = ("tuned", "argmax")
MULTI_LABEL_RULES = ("youden", "f1", "fixed-0.5")
#: int8 calibration windows per fold (as `ecg-edge export`)
N_CALIB = 512


def group_key(record: dict[str, Any]) -> str:
    """What a fold keeps together: the patient where the record names one, else the record."""
    pid = (record.get("meta") or {}).get("patient_id")
    return f"patient:{pid}" if pid is not None else f"record:{record['id']}"


def fold_of(keys: Sequence[str], k: int) -> np.ndarray:
    """Fold 0..k-1 of each key (`train.data.sources.hash_bucket`: SHA-256, first 8 bytes, modulo k)."""
    from train.data.sources import hash_bucket

    return np.array([hash_bucket(key, k) for key in keys], dtype=np.int64)


def thresholds_by_rule(rule: str, probs: np.ndarray, truth: np.ndarray, labels: tuple[str, ...],
                       multilabel: bool) -> tuple[float, ...]:
    """Per-class thresholds of `rule` chosen on record probabilities `probs` and targets `truth`."""
    from distill.release import single_label_thresholds
    from train.metrics import operating_thresholds

    k = len(labels)
    if rule in ("argmax", "fixed-0.5"):
        return (0.5,) * k
    if rule == "tuned" and not multilabel:
        return single_label_thresholds(probs, truth, np.arange(len(probs)), labels)
    if rule in ("youden", "f1") and multilabel:
        return tuple(float(t) if np.isfinite(t) else 0.5 for t in operating_thresholds(truth, probs, rule))
    raise ConfigError(f"threshold rule {rule!r}: expected one of "
                      f"{MULTI_LABEL_RULES if multilabel else SINGLE_LABEL_RULES}")


def decision_key(labels: Sequence[str]) -> str:
    """The decision score a choice maximises: the CinC 2017 challenge F1 where N, A, O exist, else macro F1."""
    from train.metrics import CHALLENGE_2017

    return "challenge_f1" if all(c in labels for c in CHALLENGE_2017) else "f1"


def _decision_value(scores: dict[str, Any], key: str) -> dict[str, Any]:
    return scores["challenge_f1"] if key == "challenge_f1" else scores["f1"]["macro"]


def cross_fitted(probs: np.ndarray, truth: np.ndarray, fold: np.ndarray, rule: str, labels: tuple[str, ...],
                 multilabel: bool) -> np.ndarray:
    """Decisions (n, K) of OOF record probabilities, each fold's at thresholds chosen on the others."""
    from edge_runtime.backends import decide

    pred = np.zeros(probs.shape, dtype=bool)
    for f in np.unique(fold):
        held = fold == f
        th = thresholds_by_rule(rule, probs[~held], truth[~held], labels, multilabel)
        pred[held] = decide(probs[held], th, multilabel)
    return pred


def score_oof(probs: np.ndarray, rows: np.ndarray, truth: np.ndarray, fold: np.ndarray, record_rules: Sequence[str],
              rules: Sequence[str], labels: tuple[str, ...], multilabel: bool, n_boot: int
              ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[tuple[str, str], np.ndarray]]:
    """One candidate's OOF window probabilities `probs` (record `rows`; `truth` and `fold` per record,
    in sorted record order) scored under each record rule: (record probabilities per record rule,
    {"ranking": {record rule: bootstrap_scores}, "record_rules": {record rule: {threshold rule:
    {"decisions", <decision key>, "per_fold"}}}}, the cross-fitted decisions per (threshold rule,
    record rule))."""
    from train.metrics import bootstrap_scores, decision_scores

    key = decision_key(labels)
    views, preds = {}, {}
    scores: dict[str, Any] = {"ranking": {}, "record_rules": {}}
    for rr in record_rules:
        p_rec = views[rr] = _record_view(probs, rows, rr)
        scores["ranking"][rr] = bootstrap_scores(truth, p_rec, n_boot=n_boot, label_names=labels)
        scores["record_rules"][rr] = {}
        for rule in rules:
            pred = preds[rule, rr] = cross_fitted(p_rec, truth, fold, rule, labels, multilabel)
            dec = decision_scores(truth, pred, labels, n_boot=n_boot)
            per_fold = [float(_decision_value(decision_scores(truth[fold == f], pred[fold == f], labels, n_boot=1),
                                              key)["value"] or 0.0) for f in np.unique(fold)]
            scores["record_rules"][rr][rule] = {"decisions": dec, key: _decision_value(dec, key), "per_fold": per_fold}
    return views, scores, preds


def choose(cands: Sequence[dict[str, Any]], record_rules: Sequence[str], rules: Sequence[str],
           key: str) -> tuple[int, str, str]:
    """(candidate, record rule, threshold rule) of the best cross-fitted `key` over `cands` (as
    `score_oof` scores them); ties go to the earlier candidate, record rule and threshold rule."""
    scored = [(c["record_rules"][rr][r][key]["value"] or -1.0, -i, -j, -k)
              for i, c in enumerate(cands) for j, rr in enumerate(record_rules) for k, r in enumerate(rules)]
    _, neg_i, neg_j, neg_k = max(scored)
    return -neg_i, record_rules[-neg_j], rules[-neg_k]


def candidate_configs(dcfg: DistillConfig, tcfg: Any, cv: CvConfig) -> list[tuple[str, DistillConfig, Any]]:
    """(name, distill config, train config) of each candidate; the config itself without candidates."""
    out = []
    for c in cv.candidates or ({},):
        d = replace(dcfg, **{k: v for k, v in c.items() if k in CV_DISTILL_KEYS})
        t = replace(tcfg, **{k: v for k, v in c.items() if k in CV_TRAIN_KEYS})
        name = ", ".join(f"{k}={v}" for k, v in sorted(c.items())) or "as configured"
        out.append((name, d, t))
    return out


def _fold_windows(shards: Path, pool: Sequence[str], leads: Sequence[str], keep: np.ndarray) -> Any:
    """The pool's windows where `keep` (over the pool's splits' windows, in pool order) as training
    examples: `train.loader.WindowSet`s of each split with those windows as their subset."""
    import torch

    from train.loader import WindowSet

    sets, start = [], 0
    for split in pool:
        n = len(WindowSet(shards, split, leads))
        sets.append(WindowSet(shards, split, leads, subset=np.flatnonzero(keep[start:start + n])))
        start += n
    return torch.utils.data.ConcatDataset(sets)


def _train_fold(data: Any, teacher: Any, tmeta: dict[str, Any] | None, dcfg: DistillConfig,
                tcfg: Any, info: dict[str, Any], lead_index: int, out: Path, progress: bool) -> Any:
    from distill.distill import DistillObjective, student_augment
    from train.engine import fit, seed_everything
    from train.models import create_model

    labels = tuple(info["label_names"])
    seed_everything(tcfg.seed)
    student = create_model(dcfg.student, leads=(dcfg.lead,), n_classes=len(labels),
                           window=int(info["spec"]["window_s"] * info["spec"]["fs"]), **dcfg.student_args)
    model = DistillObjective(student, teacher, dcfg, lead_index=lead_index, multilabel=bool(info["multilabel"]),
                             teacher_dim=getattr(teacher.encoder, "embed_dim", None) if teacher is not None else None,
                             augment=student_augment(dcfg, info["spec"]["fs"]), seed=tcfg.seed)
    # optional settings left unset stay out of a fold's identity, so adding one keeps finished folds valid
    meta = {"task": "cv-fold", "distill": {k: v for k, v in asdict(dcfg).items() if v is not None},
            "teacher": (tmeta or {}).get("checkpoint_sha256")}
    done = _finished_fold(out / "checkpoint.pt", meta, tcfg, len(data))
    if done is not None:  # a run that was stopped resumes at its first unfinished fold
        model.load_state_dict(done)
    else:
        fit(model, data, tcfg, out, meta=meta, progress=progress)
    return student.eval()


def _finished_fold(path: Path, meta: dict[str, Any], tcfg: Any, n_windows: int) -> dict[str, Any] | None:
    """The weights of a fold trained to the end with the same settings on as many windows, or None."""
    if not path.is_file():
        return None
    from train.engine import load_checkpoint

    ckpt = load_checkpoint(path)
    hist = ckpt.get("history") or [{}]
    same = (ckpt.get("meta") == meta and int(ckpt.get("epoch", 0)) == tcfg.epochs
            and hist[-1].get("ecgs") == (n_windows // tcfg.batch_size) * tcfg.batch_size
            and ckpt.get("scheduler", {}).get("base_lrs", [None])[0] == tcfg.lr)
    return ckpt["state_dict"] if same else None


def _student_probs(student: Any, x: np.ndarray, lead_index: int, multilabel: bool) -> np.ndarray:
    from edge_runtime.backends import probabilities
    from train.engine import predict

    logits = predict(student, x, batch_size=512, channels=[lead_index], forward=lambda t: student(t[:, :, None, :]))
    return probabilities(logits, multilabel)


def _int8_probs(student: Any, spec: Any, calib: np.ndarray, x: np.ndarray, folder: Path) -> np.ndarray:
    """Window probabilities of the student quantized as it ships (LiteRT int8), run on LiteRT."""
    from distill.export import export_tflite
    from distill.release import run_artifact

    built = export_tflite(student, spec, folder, "int8", calib=calib)
    return run_artifact(built.manifest, x)[0]


def _record_view(values: np.ndarray, rows: np.ndarray, reduce: str = "mean") -> np.ndarray:
    from train.metrics import aggregate_by_record

    return aggregate_by_record(values, rows, reduce)[1]


def run_cv(shards: str | Path, teacher_ckpt: str | Path | None, dcfg: DistillConfig, tcfg: Any, cv: CvConfig,
           out: str | Path, *, n_boot: int = 1000, progress: bool = True,
           log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict[str, Any]:
    """The whole cross-validation (module docstring); writes OUT/cv.json and OUT/oof.npz."""
    from distill.distill import (
        TeacherOutputs, _windows, distill_students, student_augment, teacher_from_checkpoint, teacher_outputs,
    )
    from distill.export import ExportSpec
    from edge_runtime.abstain import choose_bands, coverage_curve
    from edge_runtime.config import to_jsonable, write_json
    from edge_runtime.provenance import sha256_of
    from edge_runtime.signal import PreprocessConfig
    from train.data.shards import open_shards
    from train.engine import load_checkpoint
    from train.loader import read_records
    from train.metrics import bootstrap_scores, decision_scores

    shards, out = Path(shards), Path(out)
    info, present = open_shards(shards)
    for _, d, _ in candidate_configs(dcfg, tcfg, cv):  # a bad [distill.augment] fails before any training
        student_augment(d, info["spec"]["fs"])
    labels, multilabel = tuple(info["label_names"]), bool(info["multilabel"])
    missing = [s for s in cv.pool if s not in present or not len(present[s])]
    if missing:
        raise ConfigError(f"cv.pool: split {missing[0]!r} holds no windows in {shards}")
    if set(cv.pool) & set(dcfg.eval_splits):
        raise ConfigError(f"cv.pool {list(cv.pool)} overlaps distill.eval_splits {list(dcfg.eval_splits)}: the part "
                          "scored once must stay out of the cross-validation")
    teacher, tmeta, t_leads = None, None, tuple(info["spec"]["leads"])
    if teacher_ckpt is not None:
        ckpt = load_checkpoint(teacher_ckpt)
        t_leads = tuple(ckpt["meta"]["encoder"]["kwargs"]["leads"])
        x_tr, y_tr, _, _ = _windows(shards, ("train",), t_leads)
        teacher, tmeta = teacher_from_checkpoint(ckpt, x_tr, y_tr, None, seed=tcfg.seed)
        tmeta = tmeta | {"checkpoint_sha256": sha256_of(ckpt["path"])}
        del x_tr, y_tr
    if dcfg.lead not in t_leads:
        raise ConfigError(f"distill.lead: {dcfg.lead!r} is not among the teacher's leads {list(t_leads)}")
    lead_index = t_leads.index(dcfg.lead)
    x, y, rows, _ = _windows(shards, cv.pool, t_leads)
    # the frozen teacher's outputs on every pool window, once for all folds and candidates
    t_out = teacher_outputs(teacher, x, device=tcfg.device) if teacher is not None else None
    records = read_records(shards)
    rec_ids = np.unique(rows)
    rec_fold = fold_of([group_key(records[int(r)]) for r in rec_ids], cv.folds)
    win_fold = rec_fold[np.searchsorted(rec_ids, rows)]
    truth = _record_view(y, rows, "max")
    empty = [f for f in range(cv.folds) if not (rec_fold == f).any()]
    if empty:
        raise ConfigError(f"cv.folds: {cv.folds} folds over {len(rec_ids)} records leave fold {empty[0]} empty; "
                          "use fewer folds")
    log(f"cv: {len(rec_ids)} records ({len(x)} windows) of {'+'.join(cv.pool)} in {cv.folds} folds "
        f"({', '.join(str(int((rec_fold == f).sum())) for f in range(cv.folds))} records)")
    key = decision_key(labels)
    rules = MULTI_LABEL_RULES if multilabel else SINGLE_LABEL_RULES
    several = bool((np.bincount(np.searchsorted(rec_ids, rows)) > 1).any())
    # with one window per record the max over windows is the mean: only "mean" is then scored
    record_rules = tuple(cv.record_rules) if several else tuple(r for r in cv.record_rules if r == "mean") or ("mean",)
    cands, oof, fold_students, preds = [], {}, {}, {}
    arrays: dict[str, np.ndarray] = {"record_rows": rec_ids, "fold": rec_fold, "truth": truth}
    for ci, (name, d, t) in enumerate(candidate_configs(dcfg, tcfg, cv)):
        probs = np.zeros((len(x), len(labels)), np.float32)
        fold_students[ci] = []
        for f in range(cv.folds):
            held = win_fold == f
            log(f"cv: candidate {ci} ({name}), fold {f + 1}/{cv.folds}: training on {int((~held).sum())} windows")
            data = _fold_windows(shards, cv.pool, t_leads, ~held)
            if t_out is not None:  # positions of the fold's windows in pool order, as _fold_windows keeps them
                data = TeacherOutputs(data, t_out[0][~held], t_out[1][~held])
            st = _train_fold(data, teacher, tmeta, d, t, info, lead_index,
                             out / "folds" / f"candidate{ci}" / f"fold{f}", progress)
            probs[held] = _student_probs(st, x[held], lead_index, multilabel)
            fold_students[ci].append(st)
        oof[ci] = probs
        views, scores, decided = score_oof(probs, rows, truth, rec_fold, record_rules, rules, labels, multilabel,
                                           n_boot)
        for rr, p_rec in views.items():
            arrays[f"fp32_candidate{ci}" + ("" if rr == "mean" else f"_{rr}")] = p_rec
        preds.update({(ci, *k): v for k, v in decided.items()})
        entry = {"candidate": ci, "what": name, "distill": to_jsonable(d), "epochs": t.epochs, "lr": t.lr, **scores}
        cands.append(entry)
        _, rr, r = choose([entry], record_rules, rules, key)
        log(f"cv: candidate {ci} ({name}): OOF macro AUROC {entry['ranking']['mean']['auroc']['macro']['value']:.3f}, "
            f"{key} {entry['record_rules'][rr][r][key]['value']:.3f} ({r} thresholds, record = "
            f"{rr} over windows, cross-fitted)")
    chosen, record_rule, rule = choose(cands, record_rules, rules, key)
    p_rec = _record_view(oof[chosen], rows, record_rule)
    thresholds = thresholds_by_rule(rule, p_rec, truth, labels, multilabel)
    how = (f"{rule} thresholds on the out-of-fold record scores ({record_rule} of the window probabilities) of "
           f"{len(rec_ids)} {'+'.join(cv.pool)} records ({cv.folds}-fold cross-validation, `ecg-edge cv`); "
           f"configuration, threshold rule and record rule chosen by the cross-fitted {key}")
    decision: dict[str, Any] = {"thresholds": list(thresholds), "abstain": None, "rule": rule,
                                "record_rule": record_rule, "how": how,
                                "cv": {"folds": cv.folds, "pool": list(cv.pool), "candidate": cands[chosen]["what"],
                                       key: cands[chosen]["record_rules"][record_rule][rule][key]}}
    result: dict[str, Any] = {"dataset": info["source"], "labels": list(labels), "multilabel": multilabel,
                              "lead": dcfg.lead, "folds": cv.folds, "pool": list(cv.pool),
                              "records": int(len(rec_ids)), "windows": int(len(x)),
                              "records_per_fold": [int((rec_fold == f).sum()) for f in range(cv.folds)],
                              "decision_metric": key, "rules": list(rules), "record_rules": list(record_rules),
                              "candidates": cands,
                              "chosen": {"candidate": chosen, "what": cands[chosen]["what"], "rule": rule,
                                         "record_rule": record_rule, "thresholds": list(thresholds)},
                              "teacher": tmeta and {k: tmeta[k] for k in ("objective", "encoder", "checkpoint_sha256")}}
    arrays["fp32"] = p_rec
    from train.metrics import paired_difference

    mine = preds[chosen, rule, record_rule].astype(np.float64)
    result["paired"] = [
        {"against": f"candidate {i} ({cands[i]['what']}), {r} thresholds, record = {rr} over windows",
         "candidate": i, "rule": r, "record_rule": rr,
         **paired_difference(truth, mine, preds[other].astype(np.float64), key, n_boot=n_boot, label_names=labels)}
        for other in preds if other != (chosen, rule, record_rule) for i, r, rr in [other]]
    if cv.int8:
        spec = ExportSpec(preprocess=PreprocessConfig(**info["preprocess"]), leads=(dcfg.lead,), labels=labels,
                          multilabel=multilabel, thresholds=thresholds, record_rule=record_rule)
        x_st = x[:, lead_index:lead_index + 1, None, :]
        q = np.zeros_like(oof[chosen])
        rng = np.random.default_rng(tcfg.seed)
        for f, st in enumerate(fold_students[chosen]):
            held = win_fold == f
            train_idx = np.flatnonzero(~held)
            calib = np.ascontiguousarray(x_st[np.sort(rng.choice(train_idx, min(N_CALIB, len(train_idx)),
                                                                  replace=False))], dtype=np.float32)
            log(f"cv: fold {f + 1}/{cv.folds}: int8 (LiteRT PTQ) on its held-out {int(held.sum())} windows")
            q[held] = _int8_probs(st, spec, calib, np.ascontiguousarray(x_st[held], dtype=np.float32),
                                  out / "folds" / f"candidate{chosen}" / f"fold{f}" / "tflite-int8")
        q_rec = _record_view(q, rows, record_rule)
        bands = choose_bands(q_rec, p_rec, thresholds, multilabel, target=cv.target_agreement,
                             max_abstain=cv.max_abstain)
        from edge_runtime.backends import decide

        same = (decide(q_rec, thresholds, multilabel) == decide(p_rec, thresholds, multilabel)).all(axis=1)
        q_pred = cross_fitted(q_rec, truth, rec_fold, rule, labels, multilabel)
        result["int8"] = {
            "what": "each fold's student of the chosen configuration, PT2E PTQ to LiteRT int8 (512 calibration "
                    "windows of its training folds), run on LiteRT on its held-out fold",
            "ranking": bootstrap_scores(truth, q_rec, n_boot=n_boot, label_names=labels),
            key: _decision_value(decision_scores(truth, q_pred, labels, n_boot=n_boot), key),
            "agreement_records": float(same.mean()), "bands": list(bands),
            "coverage": coverage_curve(q_rec, truth, thresholds, bands, multilabel, reference=p_rec)}
        decision["abstain"] = list(bands)
        decision["abstain_how"] = (f"per class, the smallest band at which the int8 out-of-fold decisions kept agree "
                                   f"with the float ones on >= {cv.target_agreement:.1%} of records, setting aside "
                                   f"at most {cv.max_abstain:.0%} of the class's decisions "
                                   "(edge_runtime.abstain.choose_bands)")
        arrays["int8"] = q_rec
        log(f"cv: int8 vs fp32 out of fold: {same.mean():.4f} of records agree; bands "
            + ", ".join(f"{lab} {b:.3f}" for lab, b in zip(labels, bands)))
    result["decision"] = decision
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "oof.npz", **arrays)
    if cv.final:
        _, d, t = candidate_configs(dcfg, tcfg, cv)[chosen]
        d = replace(d, train_splits=cv.pool)
        log(f"cv: final student ({cands[chosen]['what']}) on all {len(x)} pool windows; the test part "
            f"({'+'.join(d.eval_splits)}) is scored once")
        final = distill_students(shards, teacher_ckpt, d, t, out / "final", baseline=teacher_ckpt is None,
                                 n_boot=n_boot, progress=progress, decision=decision)
        name = "distilled" if teacher_ckpt is not None else "baseline"
        result["final"] = {"checkpoint": str(out / "final" / name / "checkpoint.pt"),
                           "eval_splits": final["eval_splits"], "models": final["models"]}
    write_json(out / "cv.json", result)
    return result
