"""The one training loop: every objective, fine-tuning and distillation run through `fit`.

Read it top to bottom: seed -> (DDP) -> data -> AdamW with cosine warm-up -> epochs of
forward / backward / clip / step -> checkpoint after every epoch (atomic) -> resume from it.

- One process or many: launched by `torchrun`, `fit` joins the process group from the
  environment (gloo on CPU, nccl on CUDA), shards the data with `DistributedSampler` (disjoint
  windows per rank) and averages gradients with `DistributedDataParallel`; without `torchrun`
  the same code runs in one process (world size 1).
- bf16 autocast on CUDA (precision "auto" or "bf16"); fp32 on CPU, seeded and deterministic.
- A checkpoint holds the weights, optimizer and scheduler state, the epoch, the history and
  whatever the caller puts in `meta` (model names and arguments, config, signal spec, data hash);
  resuming checks that the model and data are the same before continuing.

`predict` is its counterpart for inference: the one batched loop that runs a torch module over
windows (evaluation, distillation, export, parity, Brevitas all call it).
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from edge_runtime.errors import ConfigError, DatasetError
from train.config import TrainConfig
from train.loader import to_device

CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = "checkpoint.pt"
#: Fields of `meta` that must match between a checkpoint and the run resuming it.
RESUME_KEYS = ("task", "objective", "encoder", "text_tower", "data_hash")


@dataclass(frozen=True)
class Dist:
    """Where this process sits: rank, world size and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> Dist:
    """Join the torchrun process group if WORLD_SIZE > 1; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' asked for but torch sees no CUDA device")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local, dev)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch; deterministic kernels on CPU (a warning where none exists)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def warmup_cosine(total_steps: int, warmup_frac: float) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over `warmup_frac` of the steps, then cosine decay to 0."""
    warm = max(1, int(round(total_steps * warmup_frac))) if warmup_frac > 0 else 0

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and kernels only; never on norms, biases or temperatures."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _reseed_generators(model: nn.Module, seed: int, epoch: int, rank: int) -> None:
    """Augmentation generators get a fresh seed per (epoch, rank): resumable, different per rank."""
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Generator):
                value.manual_seed(seed * 1_000_003 + epoch * 1009 + rank)


def _sync_buffers(model: nn.Module, dist: Dist) -> None:
    """BatchNorm statistics: rank 0's everywhere, so every rank ends with identical state."""
    if dist.world > 1:
        for buf in model.buffers():
            torch.distributed.broadcast(buf, 0)


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write atomically: a crash mid-write never leaves a half checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `fit`; one clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike
        raise ConfigError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path}: not an ecg-edge checkpoint of format {CHECKPOINT_FORMAT}")
    ckpt["path"] = str(path)
    return ckpt


def _check_resume(ckpt: dict[str, Any], meta: dict[str, Any]) -> None:
    for key in RESUME_KEYS:
        if ckpt["meta"].get(key) != meta.get(key):
            raise ConfigError(f"{ckpt['path']}: cannot resume: {key} was {ckpt['meta'].get(key)!r}, "
                              f"this run has {meta.get(key)!r}")


def _progress(loader: DataLoader, desc: str, show: bool):
    if not show:
        return loader
    try:
        from tqdm import tqdm
    except ImportError:
        return loader
    return tqdm(loader, desc=desc, unit="batch", file=sys.stderr, leave=False, dynamic_ncols=True)


def _mean_across_ranks(values: list[float], dist: Dist) -> float:
    t = torch.tensor([sum(values), len(values)], dtype=torch.float64, device=dist.device)
    if dist.world > 1:
        torch.distributed.all_reduce(t)
    return float(t[0] / max(1.0, float(t[1])))


def fit(model: nn.Module, train_set: Dataset, cfg: TrainConfig, out: str | Path | None, *,
        meta: dict[str, Any], resume: bool = False, stop_after: int | None = None,
        progress: bool = True, dist: Dist | None = None) -> dict[str, Any]:
    """Train `model` (its forward maps a batch dict to (loss, logs)) on `train_set`.

    `out`: folder for `checkpoint.pt` and `history.jsonl` (None: keep nothing). `resume`: continue
    from `out/checkpoint.pt`. `stop_after`: end this call after that many epochs (a time-sliced or
    preemptible job resumes later with the same schedule). Returns a summary with the history.
    """
    dist = dist or setup_distributed(cfg.device)
    out = Path(out) if out is not None else None
    model.to(dist.device)
    wrapped: nn.Module = model
    if dist.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None)
    sampler = DistributedSampler(train_set, num_replicas=dist.world, rank=dist.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                        drop_last=True, pin_memory=dist.device.type == "cuda",
                        persistent_workers=cfg.num_workers > 0)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise DatasetError(f"training set: {len(train_set)} windows over {dist.world} process(es) make no full "
                           f"batch of {cfg.batch_size}; lower train.batch_size")
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.epochs * steps_per_epoch, cfg.warmup_frac))
    bf16 = dist.device.type == "cuda" and cfg.precision in ("auto", "bf16")
    if cfg.precision == "bf16" and dist.device.type != "cuda":
        raise ConfigError("train.precision: 'bf16' needs a CUDA device; use 'auto' or 'fp32' on CPU")
    history: list[dict[str, Any]] = []
    start = 0
    ckpt_path = out / CHECKPOINT_NAME if out is not None else None
    if resume:
        if ckpt_path is None:
            raise ConfigError("resume: needs an output folder holding checkpoint.pt")
        ckpt = load_checkpoint(ckpt_path)
        _check_resume(ckpt, meta)
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start, history = int(ckpt["epoch"]), list(ckpt["history"])
    run_epochs = range(start, cfg.epochs if stop_after is None else min(cfg.epochs, start + stop_after))
    for epoch in run_epochs:
        sampler.set_epoch(epoch)
        _reseed_generators(model, cfg.seed, epoch, dist.rank)
        wrapped.train()
        losses, sums, n_seen, t0 = [], {}, 0, time.perf_counter()
        bar = _progress(loader, f"epoch {epoch + 1}/{cfg.epochs}", progress and dist.main)
        for step, batch in enumerate(bar):
            batch = to_device(batch, dist.device)
            with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=bf16):
                loss, logs = wrapped(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch + 1} step {step}: loss is {loss.item()}; lower train.lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n_seen += batch["x"].shape[0]
            if hasattr(bar, "set_postfix") and step % max(1, cfg.log_every) == 0:
                rate = n_seen * dist.world / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", ecg_s=f"{rate:.0f}")
        if dist.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        _sync_buffers(model, dist)
        row = {"epoch": epoch + 1, "loss": _mean_across_ranks(losses, dist), "steps": len(losses),
               "ecgs": n_seen * dist.world, "seconds": round(seconds, 3),
               "ecg_per_s": round(n_seen * dist.world / seconds, 2), "lr": scheduler.get_last_lr()[0]}
        row |= {k: v / max(1, len(losses)) for k, v in sums.items()}
        history.append(row)
        if dist.main:
            print(f"epoch {row['epoch']}/{cfg.epochs}: loss {row['loss']:.4f}, {row['ecg_per_s']:.0f} ECG/s "
                  f"({row['seconds']:.1f} s)", file=sys.stderr)
            if ckpt_path is not None:
                save_checkpoint(ckpt_path, {
                    "format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "state_dict": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "history": history, "meta": meta, "world_size": dist.world,
                    "versions": {"torch": str(torch.__version__)}})
        if dist.world > 1:
            torch.distributed.barrier()
    return {"history": history, "epochs_done": history[-1]["epoch"] if history else 0,
            "checkpoint": str(ckpt_path) if ckpt_path else None, "world_size": dist.world, "rank": dist.rank,
            "device": str(dist.device), "bf16": bf16}


def predict(module: nn.Module, x: np.ndarray, *, batch_size: int = 256, device: str | torch.device | None = None,
            channels: Sequence[int] | None = None, forward: Callable[[torch.Tensor], Any] | None = None) -> np.ndarray:
    """Outputs (n, ...) float32 of `module` on the windows `x` (n, ...), batch by batch, in eval mode
    (the module's mode restored afterwards) under `torch.inference_mode`.

    A memory map is read one batch at a time; `channels` picks axis-1 indices per batch (e.g. a
    model's leads out of a shard's). `forward` is called on each batch instead of `module` (e.g.
    `objective.encode_ecg`, or a lambda taking a Brevitas QuantTensor's `.value`); a tuple output
    gives its first element. `device`: None runs where the module's parameters are (CPU without
    any). An exported graph (torch.export, convert_pt2e) refuses `.eval()`: it runs as exported.
    """
    if batch_size < 1:
        raise ConfigError(f"predict: batch_size {batch_size}; expected >= 1")
    if device is None:
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    fn = module if forward is None else forward
    was_training = module.training
    try:
        module.eval()
    except NotImplementedError:  # an exported graph keeps the mode it was exported in
        was_training = False
    out: list[np.ndarray] = []
    try:
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                batch = x[i:i + batch_size] if channels is None else x[i:i + batch_size][:, list(channels)]
                y = fn(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device))
                y = y[0] if isinstance(y, (list, tuple)) else y
                out.append(y.float().cpu().numpy())
    finally:
        if was_training:
            module.train()
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
