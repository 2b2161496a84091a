"""Convert a dataset once into memory-mapped shards of preprocessed fixed windows plus a metadata table.

Layout of a shard folder (`ecg-edge data build`):

    dataset.json            source, label names, SignalSpec, preprocessing config, the filter design
                            of every input rate, counts, skipped records with the reason, sha256 of files
    records.jsonl           one line per record: id, split, first window, window count, labels, metadata
    <split>/windows-NNNNN.npy   float32 (n, n_leads, window), `np.load(..., mmap_mode="r")`
    <split>/labels.npy      float32 (n_windows, n_classes), aligned with the windows in shard order
    <split>/index.npz       per window: record (row in records.jsonl), start (sample at fs_out),
                            flat and saturated (n_windows, n_leads) bool

Windows come from `edge_runtime.signal.Preprocessor.process_record`, the same object the runtime
streams through, so training sees exactly what a device will. Training then reads windows from
disk through the page cache instead of re-filtering records every epoch; `ShardSplit` needs only
numpy, so a million-record set streams without a loader server.
"""
from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from edge_runtime.config import to_jsonable
from edge_runtime.errors import DatasetError, EcgEdgeError
from edge_runtime.provenance import sha256_of
from edge_runtime.signal import Preprocessor, PreprocessConfig
from train.data.sources import SPLITS, DataConfig, Dataset, open_dataset

SHARD_FORMAT = 1


def window_targets(record_labels: dict[str, Any], label_names: tuple[str, ...], starts: np.ndarray,
                   fs_in: float, cfg: PreprocessConfig, delay_s: float) -> np.ndarray:
    """Per-window targets (n_windows, n_classes).

    A record with rhythm episodes (MIT-BIH) labels each window by the fraction of it spent in an
    episode of that class (>= 0.5 -> 1), with window times shifted back by the resampler delay;
    otherwise the record-level target applies to every window.
    """
    target = np.asarray(record_labels["target"], dtype=np.float32)
    out = np.repeat(target[None, :], len(starts), axis=0)
    episodes = record_labels.get("rhythm_episodes")
    if not episodes:
        return out
    t0 = starts / cfg.fs_out - delay_s
    t1 = t0 + cfg.window_s
    for j, name in enumerate(label_names):
        spans = np.array([(e["start"] / fs_in, e["end"] / fs_in) for e in episodes if e["rhythm"] == name])
        if spans.size == 0:
            out[:, j] = 0.0
            continue
        overlap = np.clip(np.minimum(t1[:, None], spans[None, :, 1]) - np.maximum(t0[:, None], spans[None, :, 0]), 0, None)
        out[:, j] = (overlap.sum(axis=1) / cfg.window_s >= 0.5).astype(np.float32)
    return out


def _jsonable_labels(labels: dict[str, Any]) -> dict[str, Any]:
    """Record labels for records.jsonl: arrays become lists, bulky beat annotations are left to the reader."""
    out = {}
    for key, value in labels.items():
        if key == "beats":
            continue
        out[key] = value.tolist() if isinstance(value, np.ndarray) else value
    return json.loads(json.dumps(out, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


_WORKER: dict[str, Any] = {}


def _init_worker(data_cfg: DataConfig, pre_cfg: PreprocessConfig, pad: bool = False) -> None:
    _WORKER.update(dataset=open_dataset(data_cfg), data_cfg=data_cfg, pre_cfg=pre_cfg, pre={}, pad=pad)


def is_too_short(skipped: dict[str, Any]) -> bool:
    """Whether a `dataset.json` "skipped" entry is a record shorter than one window (not a bad one).
    Shards built before the `too_short` key say so only in the reason."""
    return bool(skipped.get("too_short")) or "shorter than one" in str(skipped.get("reason", ""))


def _process(record_id: str) -> dict[str, Any]:
    """Read and preprocess one record in a worker; a bad record is reported, not fatal. A record
    shorter than one window is reported `too_short`, or padded to one window (`_init_worker(pad=True)`,
    `Preprocessor.process_record(pad=True)`)."""
    ds: Dataset = _WORKER["dataset"]
    cfg: PreprocessConfig = _WORKER["pre_cfg"]
    leads = _WORKER["data_cfg"].leads
    try:
        rec = ds.read(record_id).select(leads)
    except EcgEdgeError as exc:
        return {"id": record_id, "skip": str(exc)}
    key = float(rec.fs)
    if key not in _WORKER["pre"]:
        _WORKER["pre"][key] = Preprocessor(cfg, rec.fs, leads)
    pre: Preprocessor = _WORKER["pre"][key]
    try:
        win = pre.process_record(rec.signal, where=rec.source or record_id, pad=_WORKER.get("pad", False))
    except EcgEdgeError as exc:
        return {"id": record_id, "skip": str(exc)}
    if len(win) == 0:
        return {"id": record_id, "skip": f"{rec.duration_s:.1f} s is shorter than one {cfg.window_s:g} s window",
                "too_short": True, "duration_s": round(float(rec.duration_s), 3)}
    targets = window_targets(rec.labels, ds.label_names, win.start, rec.fs, cfg, pre.delay_s)
    return {"id": record_id, "fs": key, "windows": win, "targets": targets,
            "labels": _jsonable_labels(rec.labels), "meta": rec.meta}


def build_shards(data_cfg: DataConfig, pre_cfg: PreprocessConfig, out: str | Path, *,
                 shard_windows: int = 8192, workers: int = 1,
                 progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, Any]:
    """Preprocess every record of every split into `out`; return the dataset.json summary."""
    out = Path(out)
    if (out / "dataset.json").exists():
        raise DatasetError(f"{out}: already holds shards (dataset.json); choose an empty folder")
    dataset = open_dataset(data_cfg)
    out.mkdir(parents=True, exist_ok=True)
    records, skipped, counts, designs = [], [], {}, {}
    # spawn, not fork: forking a process that runs threads (torch, JAX) can deadlock the child
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                               initargs=(data_cfg, pre_cfg)) if workers > 1 else None
    if pool is None:
        _init_worker(data_cfg, pre_cfg)
    try:
        for split in SPLITS:
            ids = dataset.ids(split)
            results = pool.map(_process, ids, chunksize=8) if pool else map(_process, ids)
            if progress is not None:
                results = progress(results, total=len(ids), desc=f"{split:5s}")
            counts[split] = _write_split(out / split, split, results, records, skipped, designs,
                                         pre_cfg, len(dataset.label_names), shard_windows)
    finally:
        if pool is not None:
            pool.shutdown()
    with open(out / "records.jsonl", "w", encoding="utf-8") as f:
        for row in records:
            f.write(json.dumps(row, default=str) + "\n")
    files = sorted(p for p in out.rglob("*") if p.is_file())
    info = {
        "format": SHARD_FORMAT, "source": data_cfg.source, "data": to_jsonable(data_cfg),
        "label_names": list(dataset.label_names), "multilabel": dataset.multilabel,
        "spec": pre_cfg.spec(data_cfg.leads).to_dict(), "preprocess": pre_cfg.to_dict(),
        "filter_designs": designs, "windows": counts, "records": len(records), "skipped": skipped,
        "sha256": {str(p.relative_to(out)): sha256_of(p) for p in files},
    }
    (out / "dataset.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return info


def _write_split(folder: Path, split: str, results: Iterable[dict[str, Any]], records: list, skipped: list,
                 designs: dict, pre_cfg: PreprocessConfig, n_classes: int, shard_windows: int) -> int:
    """Stream results into shard files of at most `shard_windows` windows; return the window count."""
    folder.mkdir(parents=True, exist_ok=True)
    pending: list[np.ndarray] = []
    labels, rec_idx, starts, flat, sat = [], [], [], [], []
    n_pending = n_total = shard = 0

    def flush() -> None:
        nonlocal pending, n_pending, shard
        if n_pending:
            np.save(folder / f"windows-{shard:05d}.npy", np.concatenate(pending))
            shard += 1
        pending, n_pending = [], 0

    for res in results:
        if "skip" in res:
            skipped.append({"id": res["id"], "split": split, "reason": res["skip"],
                            **({"too_short": True, "duration_s": res["duration_s"]} if res.get("too_short") else {})})
            continue
        win = res["windows"]
        if str(res["fs"]) not in designs:
            designs[str(res["fs"])] = pre_cfg.design(res["fs"]).to_dict()
        records.append({"id": res["id"], "split": split, "first_window": n_total, "n_windows": len(win),
                        "labels": res["labels"], "meta": res["meta"]})
        pending.append(win.data)
        labels.append(res["targets"])
        rec_idx.append(np.full(len(win), len(records) - 1, np.int64))
        starts.append(win.start)
        flat.append(win.flat)
        sat.append(win.saturated)
        n_pending += len(win)
        n_total += len(win)
        if n_pending >= shard_windows:
            flush()
    flush()
    cat = (lambda xs, shape: np.concatenate(xs) if xs else np.empty(shape))
    np.save(folder / "labels.npy", cat(labels, (0, n_classes)).astype(np.float32))
    np.savez(folder / "index.npz", record=cat(rec_idx, (0,)).astype(np.int64), start=cat(starts, (0,)).astype(np.int64),
             flat=cat(flat, (0, 0)).astype(bool), saturated=cat(sat, (0, 0)).astype(bool))
    return n_total


@dataclass
class ShardSplit:
    """One split of a shard folder, memory-mapped: `split[i]` -> (window (n_leads, T) float32, target)."""

    folder: Path

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if not (self.folder / "labels.npy").is_file():
            raise DatasetError(f"{self.folder}: labels.npy not found; expected a split folder written by `ecg-edge data build`")
        self.shards = [np.load(p, mmap_mode="r") for p in sorted(self.folder.glob("windows-*.npy"))]
        self.labels = np.load(self.folder / "labels.npy", mmap_mode="r")
        idx = np.load(self.folder / "index.npz")
        self.record, self.start, self.flat, self.saturated = idx["record"], idx["start"], idx["flat"], idx["saturated"]
        self._offsets = np.cumsum([0] + [len(s) for s in self.shards])
        if self._offsets[-1] != len(self.labels):
            raise DatasetError(f"{self.folder}: {self._offsets[-1]} windows but {len(self.labels)} labels; the shards are incomplete")

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.folder}: window {i} out of range (0..{len(self) - 1})")
        i %= len(self)
        s = int(np.searchsorted(self._offsets, i, side="right") - 1)
        return np.asarray(self.shards[s][i - self._offsets[s]]), np.asarray(self.labels[i])

    def windows(self) -> Iterator[np.ndarray]:
        """The shard arrays in order (memory-mapped; concatenate only what fits in memory)."""
        return iter(self.shards)


def open_shards(path: str | Path) -> tuple[dict[str, Any], dict[str, ShardSplit]]:
    """Read dataset.json and memory-map every split."""
    path = Path(path)
    info_path = path / "dataset.json"
    if not info_path.is_file():
        raise DatasetError(f"{info_path}: not found; expected a folder written by `ecg-edge data build`")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if info.get("format") != SHARD_FORMAT:
        raise DatasetError(f"{info_path}: format {info.get('format')!r}; expected {SHARD_FORMAT}")
    return info, {s: ShardSplit(path / s) for s in SPLITS if (path / s).is_dir()}


def padded_records(data_cfg: DataConfig, pre_cfg: PreprocessConfig, ids: Iterable[str]) -> list[dict[str, Any]]:
    """The records `ids` (those shorter than one window) preprocessed as the shards were, each padded
    to its one window: per record {"id", "windows" (`Windows`, `padded` set), "targets", "labels",
    "meta"}. A record that cannot be read is a `DatasetError` naming it."""
    _init_worker(data_cfg, pre_cfg, pad=True)
    out = []
    for rid in ids:  # per record (the few shorter than one window)
        res = _process(rid)
        if "skip" in res:
            raise DatasetError(f"{data_cfg.source}: record {rid}: {res['skip']}")
        out.append(res)
    return out


def build_or_reuse(data_cfg: DataConfig, pre_cfg: PreprocessConfig, out: str | Path, *,
                   shard_windows: int = 8192, workers: int = 1,
                   progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, Any]:
    """The shards of `data_cfg` + `pre_cfg` in `out`: reused when already built from the same settings.

    A folder built from other settings is an error (never silently trained on the wrong data).
    """
    out = Path(out)
    if not (out / "dataset.json").is_file():
        return build_shards(data_cfg, pre_cfg, out, shard_windows=shard_windows, workers=workers, progress=progress)
    info, _ = open_shards(out)
    want = {"data": to_jsonable(data_cfg), "preprocess": pre_cfg.to_dict()}
    for key, value in want.items():
        if json.loads(json.dumps(value)) != info.get(key):
            raise DatasetError(f"{out}/dataset.json: built with other {key} settings than this config's; "
                               "choose another folder or delete it")
    return info
