"""Distillation: a frozen teacher and a single-lead student see the same record.

The teacher sees its leads (12 for a PTB-XL teacher), the student one lead of the same window,
chosen by name. Losses (`DistillObjective`), each weighted in `[distill]`:

- logit distillation with temperature T (Hinton et al. 2015): multi-label data match
  sigmoid(student / T) to sigmoid(teacher / T) with BCE, multi-class data match the softmaxes with
  KL; both scaled by T^2 so gradients keep their size across temperatures;
- embedding distillation: the student's features through a linear projection head, pulled to the
  teacher's embedding by cosine distance;
- the ground-truth loss (BCE or cross-entropy) when labels exist; `labels = false` gives pure
  distillation for unlabelled records.

`[distill.augment]` (`student_augment`) augments the student's lead in training with the
`train.augment` functions the teachers use (e.g. white noise, which also makes the float student
less sensitive to the rounding of its int8 input); the teacher's targets stay those of the clean
window ("noisy student"), so they are still computed once.

Teacher logits: a `supervised` teacher has its own head; any other pretrained teacher (clip,
fgclep, clef, ssl) gets a logistic-regression probe fitted on its frozen embeddings of the
training windows (`train.evaluate.probe_module`), the same probe `ecg-edge evaluate` reports.
The baseline is the same student trained on labels alone (all distillation weights 0), always
trained and reported beside the distilled one.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_runtime.errors import ConfigError
from edge_runtime.provenance import sha256_of
from distill.config import DistillConfig

if TYPE_CHECKING:
    from train.augment import AugmentConfig


class Teacher(nn.Module):
    """A frozen teacher: (N, C_teacher, T) -> (logits (N, K), embedding (N, D))."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "Teacher":  # always frozen, BatchNorm statistics included
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        emb = self.encoder(x)
        return self.head(emb), emb


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float, multilabel: bool) -> Tensor:
    """Logit distillation at temperature T, scaled by T^2."""
    t = temperature
    if multilabel:
        soft = torch.sigmoid(teacher_logits / t)
        return F.binary_cross_entropy_with_logits(student_logits / t, soft) * t * t
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * t * t


def student_augment(cfg: DistillConfig, fs: float) -> AugmentConfig | None:
    """`cfg.augment` as a `train.augment.AugmentConfig` at the data's rate `fs` (unless it names
    one), or None; a bad field is one ConfigError naming `distill.augment.<field>`."""
    from train.objectives.base import as_augment_config

    if cfg.augment is None:
        return None
    return as_augment_config({"fs": float(fs), **cfg.augment}, "distill.augment")


def label_loss(logits: Tensor, target: Tensor, multilabel: bool) -> Tensor:
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target.argmax(1))


def finetune(module: nn.Module, forward, x: Tensor, y: Tensor, *, multilabel: bool, epochs: int, lr: float,
             batch_size: int, seed: int, teacher_logits: Tensor | None = None, temperature: float = 2.0,
             alpha: float = 0.5, where: str = "finetune") -> None:
    """The short seeded loop both QAT paths share: Adam on `module`'s parameters, shuffled batches,
    loss = (1 - alpha) * label loss + alpha * logit distillation from `teacher_logits` (label loss
    alone without them). `forward(x)` gives the logits (e.g. a QuantTensor's value). Batches of
    one window are skipped (BatchNorm-free students tolerate them, but a QAT graph may not)."""
    import math

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            if len(idx) < 2:
                continue
            logits = forward(x[idx])
            loss = label_loss(logits, y[idx], multilabel)
            if teacher_logits is not None:
                loss = (1 - alpha) * loss + alpha * kd_loss(logits, teacher_logits[idx], temperature, multilabel)
            if not math.isfinite(loss.item()):
                raise ConfigError(f"{where}: loss became {loss.item()} (lr {lr} too high?)")
            opt.zero_grad()
            loss.backward()
            opt.step()


class DistillObjective(nn.Module):
    """Student (+ projection head) trained against a frozen teacher; `forward(batch) -> (loss, logs)`.

    batch["x"]: (N, C_teacher, T) windows in the teacher's lead order; the student reads channel
    `lead_index` as (N, 1, 1, T). The teacher is kept out of the state dict (a checkpoint holds the
    student and the projection only) and out of the optimiser.
    """

    def __init__(self, student: nn.Module, teacher: Teacher | None, cfg: DistillConfig, *, lead_index: int,
                 multilabel: bool, teacher_dim: int | None = None, augment: Any = None, seed: int = 0) -> None:
        super().__init__()
        self.student, self.cfg, self.lead_index, self.multilabel = student, cfg, int(lead_index), multilabel
        #: `student_augment(cfg, fs)`: applied to the student's input in training mode only, drawn
        #: from a CPU generator seeded by `seed` (restarted, like the objectives', on resume)
        self.augment, self.gen = augment, torch.Generator().manual_seed(int(seed))
        object.__setattr__(self, "teacher", teacher)  # not a submodule: not saved, not trained
        distils = cfg.kd_weight > 0 or cfg.embed_weight > 0
        if distils and teacher is None:
            raise ConfigError("distill: kd_weight / embed_weight > 0 need a teacher checkpoint")
        self.proj = nn.Linear(student.feature_dim, teacher_dim) if cfg.embed_weight > 0 and teacher_dim else None

    def student_input(self, x: Tensor) -> Tensor:
        lead = x[:, self.lead_index:self.lead_index + 1, :]
        if self.training and self.augment is not None:
            from train.augment import augment

            lead = augment(lead, self.augment, self.gen)
        return lead[:, :, None, :]

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        x = batch["x"]
        feats = self.student.forward_features(self.student_input(x))
        logits = self.student.head(feats)
        loss = logits.new_zeros(())
        logs: dict[str, float] = {}
        if self.cfg.labels and self.cfg.label_weight > 0:
            lab = label_loss(logits.float(), batch["target"].float(), self.multilabel)
            loss = loss + self.cfg.label_weight * lab
            logs["label"] = float(lab.detach())
        if self.teacher is not None and (self.cfg.kd_weight > 0 or self.cfg.embed_weight > 0):
            if "teacher_logits" in batch:  # computed once before training (`TeacherOutputs`)
                t_logits, t_emb = batch["teacher_logits"], batch["teacher_emb"]
            else:
                if next(self.teacher.parameters()).device != x.device:
                    self.teacher.to(x.device)
                t_logits, t_emb = self.teacher(x)
            if self.cfg.kd_weight > 0:
                kd = kd_loss(logits.float(), t_logits.float(), self.cfg.temperature, self.multilabel)
                loss = loss + self.cfg.kd_weight * kd
                logs["kd"] = float(kd.detach())
            if self.proj is not None:
                emb = 1.0 - F.cosine_similarity(self.proj(feats).float(), t_emb.float(), dim=1).mean()
                loss = loss + self.cfg.embed_weight * emb
                logs["embed"] = float(emb.detach())
        return loss, logs


class TeacherOutputs(torch.utils.data.Dataset):
    """A training set whose examples also carry the frozen teacher's outputs on them.

    The teacher is frozen and sees no augmentation, so its logits and embedding of a window are
    the same every epoch: computed once (`teacher_outputs`) they spare every epoch, every fold and
    every candidate the teacher's forward pass. Example i of
    `base` gains "teacher_logits" = logits[i] and "teacher_emb" = emb[i]; `DistillObjective` uses
    them instead of running the teacher.
    """

    def __init__(self, base: Any, logits: np.ndarray, emb: np.ndarray) -> None:
        if not len(base) == len(logits) == len(emb):
            raise ConfigError(f"teacher outputs: {len(logits)} logits and {len(emb)} embeddings for "
                              f"{len(base)} training windows; expected one of each per window")
        self.base, self.logits, self.emb = base, logits, emb

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.base[i] | {"teacher_logits": self.logits[i], "teacher_emb": self.emb[i]}


def teacher_outputs(teacher: Teacher, x: np.ndarray, batch_size: int = 512, device: str = "cpu"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(logits (n, K), embedding (n, D)) float32 of the frozen teacher on windows `x` (n, C, T), run
    on the training device (`train.device`: "cuda", or "auto" where CUDA is available: the current
    CUDA device, as `train.engine.setup_distributed` sets it per process; else the CPU)."""
    from train.engine import predict

    dev = torch.device("cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
    teacher.to(dev)
    emb = predict(teacher.encoder, x, batch_size=batch_size, device=dev)
    return predict(teacher.head, emb, batch_size=batch_size, device=dev), emb


def teacher_from_checkpoint(ckpt: dict[str, Any], train_windows: np.ndarray, train_y: np.ndarray,
                            channels: np.ndarray, seed: int = 0) -> tuple[Teacher, dict[str, Any]]:
    """The frozen teacher of a pretraining checkpoint, with logits from its own head or a fitted probe."""
    from train.evaluate import embed, probe_module
    from train.pretrain import load_teacher

    objective, meta = load_teacher(ckpt)
    encoder = objective.encoder.eval()
    if hasattr(objective, "logits") and meta["objective"] == "supervised":
        head, how = objective.head, "the teacher's own supervised head"
    else:
        emb = embed(encoder, train_windows, channels=channels)
        head, how = probe_module(nn.Identity(), emb, train_y, seed=seed)[1], "a logistic-regression probe on its embeddings"
    return Teacher(encoder, head), meta | {"teacher_logits": how}


# --- the distillation job ---------------------------------------------------------------------

def _windows(shards, splits, leads) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(windows (n, C, T) in `leads` order, targets, record rows, channel index) of the named splits."""
    from train.loader import WindowSet

    sets = [WindowSet(shards, s, leads) for s in splits]
    x = np.concatenate([np.concatenate(list(s.split.windows()))[:, s._channels] for s in sets if len(s)])
    return x, np.concatenate([s.targets for s in sets]), np.concatenate([s.record_rows for s in sets]), sets[0]._channels


def distill_students(shards, teacher_ckpt, dcfg: DistillConfig, tcfg, out, *, baseline: bool = True,
                     n_boot: int = 1000, progress: bool = True, decision: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """Train the distilled student (and the label-only baseline) on the shards' `dcfg.train_splits`.

    `decision` (from `ecg-edge cv`: thresholds, abstention bands, record rule and how they were
    chosen) goes into each checkpoint's meta, where `ecg-edge export` takes it instead of choosing
    thresholds on the validation split, and every model is scored with its thresholds and record
    rule too (without one: window probabilities averaged per record).

    Writes OUT/distilled/checkpoint.pt, OUT/baseline/checkpoint.pt and OUT/distill.json with
    teacher, baseline and distilled macro/per-class AUROC and PRAUC (bootstrap 95 % CIs) on
    `dcfg.eval_splits`, per record, and "distilled_minus_baseline": the paired bootstrap
    difference of the two students' macro AUROC and PRAUC (`train.metrics.paired_difference`).
    """
    from pathlib import Path

    from edge_runtime.backends import probabilities
    from edge_runtime.config import to_jsonable, write_json
    from train.data.shards import open_shards
    from train.engine import fit, load_checkpoint, predict, seed_everything
    from train.loader import WindowSet, data_hash
    from train.metrics import score_records
    from train.models import create_model

    shards, out = Path(shards), Path(out)
    info, _ = open_shards(shards)
    student_augment(dcfg, info["spec"]["fs"])  # a bad [distill.augment] fails before any training
    label_names, multilabel = tuple(info["label_names"]), bool(info["multilabel"])
    teacher, tmeta, t_leads = None, None, tuple(info["spec"]["leads"])
    if teacher_ckpt is not None:
        ckpt = load_checkpoint(teacher_ckpt)
        t_leads = tuple(ckpt["meta"]["encoder"]["kwargs"]["leads"])
        x_tr, y_tr, _, ch = _windows(shards, dcfg.train_splits, t_leads)
        teacher, tmeta = teacher_from_checkpoint(ckpt, x_tr, y_tr, None, seed=tcfg.seed)
        tmeta = tmeta | {"checkpoint_sha256": sha256_of(ckpt["path"])}
    if dcfg.lead not in t_leads:
        raise ConfigError(f"distill.lead: {dcfg.lead!r} is not among the teacher's leads {list(t_leads)}")
    lead_index = t_leads.index(dcfg.lead)
    sets = [WindowSet(shards, s, t_leads) for s in dcfg.train_splits]
    data = sets[0] if len(sets) == 1 else torch.utils.data.ConcatDataset(sets)
    if teacher is not None:  # the same windows in the same order as x_tr: the teacher runs once, not per epoch
        data = TeacherOutputs(data, *teacher_outputs(teacher, x_tr, device=tcfg.device))
        del x_tr
    record_rule = (decision or {}).get("record_rule") or "mean"
    score_kw = {"record_rule": record_rule} | ({} if decision is None else
                                              {"thresholds": tuple(decision["thresholds"]), "multilabel": multilabel})
    eval_splits = dcfg.eval_splits
    x_ev, y_ev, r_ev, _ = _windows(shards, eval_splits, t_leads)
    results: dict[str, Any] = {"dataset": info["source"], "label_names": list(label_names), "lead": dcfg.lead,
                               "eval_splits": list(eval_splits), "train_splits": list(dcfg.train_splits),
                               "models": {}}
    if teacher is not None:
        results["models"]["teacher"] = {
            "what": f"{tmeta['objective']} {tmeta['encoder']['name']} over {len(t_leads)} leads ({tmeta['teacher_logits']})",
            "metrics": score_records(probabilities(predict(teacher, x_ev), multilabel), y_ev, r_ev, label_names,
                                     n_boot=n_boot, record_rule=record_rule)["ranking"]}
    scores: dict[str, np.ndarray] = {}
    runs = [("distilled", dcfg)] if teacher is not None else []
    runs += [("baseline", dcfg.baseline())] if baseline or teacher is None else []
    for name, cfg in runs:
        seed_everything(tcfg.seed)
        student = create_model(cfg.student, leads=(cfg.lead,), n_classes=len(label_names),
                               window=int(info["spec"]["window_s"] * info["spec"]["fs"]), **cfg.student_args)
        model = DistillObjective(student, teacher if name == "distilled" else None, cfg, lead_index=lead_index,
                                 multilabel=multilabel, teacher_dim=getattr(teacher.encoder, "embed_dim", None)
                                 if teacher is not None else None, augment=student_augment(cfg, info["spec"]["fs"]),
                                 seed=tcfg.seed)
        meta = {"task": "distill", "objective": name, "encoder": {"name": cfg.student, "kwargs": to_jsonable(
                    {**cfg.student_args, "leads": [cfg.lead], "n_classes": len(label_names), "window": student.window})},
                "text_tower": None, "data_hash": data_hash(info), "distill": to_jsonable(cfg),
                "teacher": {k: tmeta[k] for k in ("objective", "encoder", "checkpoint_sha256", "teacher_logits")}
                if tmeta and name == "distilled" else None,
                "shards": str(shards.resolve()), "spec": {**info["spec"], "leads": [cfg.lead]},
                "preprocess": info["preprocess"], "label_names": list(label_names), "multilabel": multilabel,
                "train_splits": list(cfg.train_splits), "decision": decision}
        summary = fit(model, data, tcfg, out / name, meta=meta, progress=progress)
        student.eval()
        logits = predict(student, x_ev, channels=[lead_index], forward=lambda x: student(x[:, :, None, :]))
        scores[name] = probabilities(logits, multilabel)
        scored = score_records(scores[name], y_ev, r_ev, label_names, n_boot=n_boot, **score_kw)
        results["models"][name] = {
            "what": f"{cfg.student} on lead {cfg.lead}" + (" distilled from the teacher" if name == "distilled"
                                                            else " trained from labels alone"),
            "checkpoint": summary["checkpoint"], "parameters": sum(p.numel() for p in student.parameters()),
            "final_loss": summary["history"][-1]["loss"],
            "metrics": scored["ranking"]} | ({"decisions": scored["decisions"]} if "decisions" in scored else {})
    if "distilled" in results["models"] and "baseline" in results["models"]:
        from train.metrics import aggregate_by_record, paired_difference

        _, t = aggregate_by_record(y_ev, r_ev, "max")
        per_record = {name: aggregate_by_record(scores[name], r_ev, record_rule)[1] for name in ("distilled", "baseline")}
        results["distilled_minus_baseline"] = {
            m: paired_difference(t, per_record["distilled"], per_record["baseline"], m, n_boot=n_boot,
                                 label_names=label_names) for m in ("auroc", "prauc")}
    write_json(out / "distill.json", results)
    return results


def load_student(checkpoint) -> tuple[nn.Module, dict[str, Any]]:
    """The student of a distillation checkpoint (distilled or baseline), weights loaded, eval mode."""
    from train.engine import load_checkpoint
    from train.models import create_model

    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    meta = ckpt["meta"]
    if meta.get("task") != "distill":
        raise ConfigError(f"{ckpt.get('path', 'checkpoint')}: task {meta.get('task')!r}; expected a student "
                          "checkpoint from `ecg-edge distill`")
    student = create_model(meta["encoder"]["name"], **meta["encoder"]["kwargs"])
    prefix = "student."
    student.load_state_dict({k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)})
    return student.eval(), meta | {"checkpoint_sha256": sha256_of(ckpt["path"])}
