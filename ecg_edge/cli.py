"""The one CLI: `ecg-edge <subcommand>`, subcommands in pipeline order.

`main(argv) -> int` so tests call it directly. Each handler imports its heavy modules inside the
handler; a missing optional dependency prints one line naming the extra to install. Every
`EcgEdgeError` is printed as one line (`ecg-edge: error: ...`) with exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from edge_runtime.errors import EcgEdgeError, MissingExtraError
from edge_runtime.errors import require as _require

def require(module: str, extra: str, command: str) -> Any:
    """Import `module` for `ecg-edge <command>`, or raise MissingExtraError naming its package and extra."""
    return _require(module, extra, f"`ecg-edge {command}`")


def _progress(command: str) -> Callable | None:
    """tqdm if installed (train extra), else no progress bar."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return lambda it, total=None, desc=None: tqdm(it, total=total, desc=desc, unit="rec", file=sys.stderr)


# --- data -------------------------------------------------------------------------------------

def cmd_data_download(args: argparse.Namespace) -> int:
    from train.data.download import download, include_patterns

    include = args.include or include_patterns(args.dataset, optional=args.with_optional or [])
    def progress(path: str, done: int, total: int) -> None:
        if total > 0 and done >= total:
            print(f"  {path} ({total:,} bytes)", file=sys.stderr)

    report = download(args.dataset, Path(args.dest), base_url=args.base_url, include=include,
                      workers=args.workers, progress=progress)
    print(f"{args.dataset}: {len(report.downloaded)} downloaded ({len(report.resumed)} resumed), "
          f"{len(report.skipped)} already verified, {report.bytes_received:,} bytes -> {args.dest}")
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    require("wfdb", "train", "data build")
    from dataclasses import replace

    from edge_runtime.config import write_json
    from ecg_edge.config import load_pipeline_config
    from train.data.shards import build_shards

    cfg = load_pipeline_config(args.config)
    data = cfg.data
    if args.source:
        data = replace(data, source=args.source)
    if args.n_records:
        data = replace(data, n_records=args.n_records)
    cfg = replace(cfg, data=data)
    out = Path(args.out)
    info = build_shards(cfg.data, cfg.preprocess, out, shard_windows=cfg.shard_windows,
                        workers=args.workers, progress=_progress("data build"))
    write_json(out / "config.json", cfg)
    _print_shard_summary(out, info)
    return 0


def _print_shard_summary(out: Path, info: dict[str, Any]) -> None:
    spec = info["spec"]
    print(f"{info['source']}: {info['records']} records -> {out}")
    print(f"  windows: {', '.join(f'{k} {v}' for k, v in info['windows'].items())} "
          f"({spec['window_s']:g} s at {spec['fs']:g} Hz, leads {' '.join(spec['leads'])})")
    print(f"  labels: {', '.join(info['label_names'])}; skipped records: {len(info['skipped'])}")
    for row in info["skipped"][:5]:
        print(f"    {row['id']}: {row['reason']}")


def cmd_data_info(args: argparse.Namespace) -> int:
    from train.data.shards import open_shards

    info, splits = open_shards(args.path)
    summary = {k: info[k] for k in ("source", "label_names", "spec", "windows", "records")}
    summary["skipped"] = len(info["skipped"])
    summary["positives"] = {s: dict(zip(info["label_names"], map(int, sp.labels.sum(axis=0))))
                            for s, sp in splits.items()}
    print(json.dumps(summary, indent=1))
    return 0


# --- stream -----------------------------------------------------------------------------------

def _stream_opts(args: argparse.Namespace, source: str, **wearable: Any):
    """The typed options of `stream` / `wearable` (`ecg_edge.stream.StreamOptions`) from the command line."""
    from ecg_edge.stream import StreamOptions

    return StreamOptions(source=source, artifact=args.model, backend=args.backend, threads=args.threads,
                         lead=args.lead, row=args.row, fs=args.fs, seconds=args.seconds, condition=args.condition,
                         speed=None if args.fast else args.speed, chunk=args.chunk, seed=args.seed,
                         profile=args.profile, bridge_max_s=args.bridge_max_s, beats=not args.no_beats,
                         jsonl=args.jsonl, csv=args.csv, audit=args.audit,
                         live=not args.no_live and sys.stdout.isatty(), **wearable)


def cmd_stream(args: argparse.Namespace) -> int:
    from ecg_edge.stream import run

    return run(_stream_opts(args, args.source))


def cmd_wearable(args: argparse.Namespace) -> int:
    from ecg_edge.stream import run

    return run(_stream_opts(args, f"virtual:{args.replay}", drop=args.drop,
                            disconnect_after=tuple(args.disconnect_after or ()), device_fs=args.device_fs))


def cmd_ble_scan(args: argparse.Namespace) -> int:
    require("bleak", "edge", "ble scan")
    import asyncio

    from firmware_bridge import scan

    found = asyncio.run(scan(args.timeout))
    for r in found:
        print(f"{r.address}  {r.name or '(no name)':24s}  rssi {r.rssi}  {r.profile or '-'}")
    print(f"{len(found)} device(s) found in {args.timeout:g} s")
    return 0


# --- bench ------------------------------------------------------------------------------------

#: benchmark name -> script in bench/ (no script may share a name with a package: bench/ is sys.path[0])
BENCHMARKS = {"preprocess": "preprocess.py", "runtime": "runtime.py", "rpeaks": "rpeaks_mitbih.py", "ble": "ble.py",
              "train": "training.py", "models": "models.py", "package": "package.py",
              "firmware": "firmware.py", "pi": "pi.py", "faults": "faults.py",
              "soak": "soak.py"}
BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def cmd_bench(args: argparse.Namespace) -> int:
    """Run bench/<name>.py in a fresh interpreter (benchmarks pin threads and cores themselves)."""
    import subprocess

    from edge_runtime.errors import ConfigError

    script = BENCH_DIR / BENCHMARKS[args.name]
    if not script.is_file():
        raise ConfigError(f"{script}: not found; the benchmarks ship with the source checkout (git clone), "
                          "not with the installed package")
    return subprocess.call([sys.executable, str(script), *args.rest])


# --- pretrain / evaluate -----------------------------------------------------------------------

def _pipeline_config(args: argparse.Namespace):
    """The config file with the command line's overrides applied."""
    from dataclasses import replace

    from ecg_edge.config import load_pipeline_config

    cfg = load_pipeline_config(args.config)
    if getattr(args, "data", None):
        cfg = replace(cfg, data=replace(cfg.data, source=args.data))
    if getattr(args, "objective", None):
        cfg = replace(cfg, pretrain=replace(cfg.pretrain, objective=args.objective))
    if getattr(args, "encoder", None):
        cfg = replace(cfg, pretrain=replace(cfg.pretrain, encoder=args.encoder))
    train = {k: v for k, v in (("epochs", getattr(args, "epochs", None)), ("device", getattr(args, "device", None)),
                               ("batch_size", getattr(args, "batch_size", None))) if v is not None}
    return replace(cfg, train=replace(cfg.train, **train)) if train else cfg


def _shards_for(args: argparse.Namespace, cfg, out: Path) -> Path:
    """--shards as given, else the config's data built (or reused) in OUT/shards."""
    import os

    from edge_runtime.errors import ConfigError
    from train.data.shards import build_or_reuse

    if args.shards:
        return Path(args.shards)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--shards: required under torchrun (build them once first: ecg-edge data build)")
    folder = out / "shards"
    build_or_reuse(cfg.data, cfg.preprocess, folder, shard_windows=cfg.shard_windows, progress=_progress("pretrain"))
    return folder


def cmd_pretrain(args: argparse.Namespace) -> int:
    require("torch", "train", "pretrain")
    if args.list_models:
        from train.models import list_models, model_entry

        for name in list_models():
            entry = model_entry(name)
            print(f"{name:24s} {entry.kind:7s} {entry.doc}")
        return 0
    from edge_runtime.config import to_jsonable, write_json
    from edge_runtime.errors import ConfigError
    from train.pretrain import pretrain

    if not args.out:
        raise ConfigError("--out: required (folder for the checkpoint)")
    cfg = _pipeline_config(args)
    out = Path(args.out)
    shards = _shards_for(args, cfg, out)
    summary = pretrain(shards, cfg.pretrain, cfg.train, out, resume=args.resume, stop_after=args.stop_after_epochs,
                       config=to_jsonable(cfg))
    if summary["rank"] == 0:
        write_json(out / "config.json", cfg)
        last = summary["history"][-1] if summary["history"] else {}
        print(f"{summary['objective']} / {summary['encoder']}: {summary['epochs_done']}/{cfg.train.epochs} epochs on "
              f"{summary['train_windows']} windows x {summary['world_size']} process(es) ({summary['device']}"
              f"{', bf16' if summary['bf16'] else ''}); last loss {last.get('loss', float('nan')):.4f}, "
              f"{last.get('ecg_per_s', 0):.0f} ECG/s -> {summary['checkpoint']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    require("sklearn", "train", "evaluate")
    from train.protocol import EvalOptions, run_evaluate
    from edge_runtime.errors import ConfigError
    from train.evaluate import fmt_ci

    if not args.shards:
        raise ConfigError("--shards: required (the shard folder to evaluate on, e.g. OUT/shards of `ecg-edge pretrain`)")
    opts = EvalOptions(fractions=tuple(args.fractions), eval_splits=tuple(args.splits),
                       random_init=not args.no_random_init, finetune=args.finetune,
                       finetune_epochs=args.finetune_epochs, zero_shot=not args.no_zero_shot,
                       fairness=not args.no_fairness, saliency=not args.no_saliency, n_boot=args.n_boot,
                       seed=args.seed)
    results = run_evaluate(args.checkpoint, args.shards, Path(args.out), opts, device=args.device)
    print(f"{'model':28s} {'setting':22s} {'macro AUROC':24s} macro PRAUC")
    for run in results["runs"]:
        m = run["metrics"]
        print(f"{run['model']:28s} {run['setting']:22s} {fmt_ci(m['auroc']['macro']):24s} {fmt_ci(m['prauc']['macro'])}")
    print(f"-> {Path(args.out) / 'evaluation.json'}, {Path(args.out) / 'evaluation.md'}"
          + (f", {results['saliency_png']}" if results["saliency_png"] else ""))
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    require("torch", "train", "distill")
    from dataclasses import replace

    from distill.distill import distill_students
    from edge_runtime.config import write_json
    from edge_runtime.errors import ConfigError
    from train.evaluate import fmt_ci

    cfg = _pipeline_config(args)
    d = cfg.distill
    for key in ("student", "lead"):
        if getattr(args, key):
            d = replace(d, **{key: getattr(args, key)})
    if args.no_labels:
        d = replace(d, labels=False)
    cfg = replace(cfg, distill=d)
    shards = args.shards
    if shards is None and args.teacher:
        from train.engine import load_checkpoint

        shards = load_checkpoint(args.teacher)["meta"]["shards"]
    if shards is None:
        raise ConfigError("--shards: required without --teacher (the shard folder to train the student on)")
    out = Path(args.out)
    res = distill_students(shards, args.teacher, cfg.distill, cfg.train, out, baseline=not args.no_baseline,
                           n_boot=args.n_boot)
    write_json(out / "config.json", cfg)
    print(f"{res['dataset']}: lead {res['lead']} students, per record on {'+'.join(res['eval_splits'])}")
    print(f"{'model':11s} {'macro AUROC':24s} macro PRAUC")
    for name, m in res["models"].items():
        print(f"{name:11s} {fmt_ci(m['metrics']['auroc']['macro']):24s} {fmt_ci(m['metrics']['prauc']['macro'])}"
              f"   {m['what']}")
    for m, d in res.get("distilled_minus_baseline", {}).items():
        ci = f"[{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]" if d["ci"] else "[no CI]"
        print(f"distilled - baseline, macro {m.upper()}: {d['difference']:+.3f} {ci} (paired bootstrap)")
    print(f"-> {out / 'distill.json'}")
    return 0


def _release(args: argparse.Namespace, *, methods: tuple[str, ...], fp32: bool, embedded: bool, name: str) -> int:
    from distill.release import release, summary_rows
    from firmware_bridge.bundle.vela import vela_compile

    summary = release(args.student, args.out, methods=methods, fp32=fp32, embedded=embedded,
                      fs_device=args.fs_device, qat_epochs=args.qat_epochs, qat_lr=args.qat_lr, n_boot=args.n_boot,
                      threads=args.threads, summary_name=name, vela=vela_compile)
    dec = "challenge F1 (N, A, O)" if "N" in summary["labels"] and "A" in summary["labels"] else "macro F1"
    print(f"\n{summary['student']} on lead {summary['lead']}, per record on {'+'.join(summary['eval_splits'])} "
          f"of {summary['dataset']}")
    print(f"{'artifact':13s} {'runtime':11s} {'bytes':>8s}  {'macro AUROC':24s} {dec:24s} agreement")
    for r in summary_rows(summary):
        print(f"{r[0]:13s} {r[1]:11s} {r[2]:>8s}  {r[3]:24s} {r[4]:24s} {r[5]}")
    for target, e in summary.get("embedded", {}).items():
        if "npu_op_share" in e:
            print(f"{target}: {e['npu_op_share']:.0%} of operators on the NPU, SRAM {e['sram_kib']:.1f} KiB, "
                  f"flash {e['off_chip_flash_kib'] + e['on_chip_flash_kib']:.1f} KiB, {e['cycles_total']:.0f} cycles")
        else:
            print(f"{target}: CMSIS-NN lowering, all int8: {e['all_int8']} ({e['pte_bytes']} bytes)")
    print(f"-> {Path(args.out) / name}")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    for module in ("torch", "executorch", "litert_torch"):
        require(module, "export", "quantize")
    return _release(args, methods=tuple(args.method), fp32=False, embedded=False, name="quantize.json")


def cmd_export(args: argparse.Namespace) -> int:
    for module in ("torch", "executorch", "litert_torch"):
        require(module, "export", "export")
    methods = (args.quant,) + (("brevitas",) if args.brevitas else ())
    return _release(args, methods=methods, fp32=True, embedded=not args.no_embedded, name="export.json")


# --- vendor bundles ---------------------------------------------------------------------------

def cmd_package(args: argparse.Namespace) -> int:
    from firmware_bridge.bundle import package

    man = package(args.artifact, args.target, args.out, golden=args.golden, sign_key=args.sign,
                  headroom=args.headroom, c_name=args.c_name, tflm=args.tflm, firmware=not args.no_firmware)
    mem = man["memory"]
    print(f"{man['target']}: flash {mem['flash_bytes']} bytes ({mem['flash_what']}), RAM {mem['ram_bytes']} bytes "
          f"({mem['ram_what']})")
    fw = (man.get("firmware") or {})
    if fw.get("measured"):
        r = fw["measured"]
        print(f"firmware on {r['board']}: {r['instructions_per_inference']['median']:,} instructions per inference, "
              f"outputs bit-identical to the host build on {r['bit_exact_windows']}/{r['windows']} golden windows")
    elif fw:
        print(f"firmware: {'not written: ' + fw['not_written'] if fw.get('not_written') else 'firmware/ written, not built: ' + fw['not_measured']}")
    if "ethos_u" in man:
        v = man["ethos_u"]
        print(f"Vela {v['accelerator']}: {v['npu_op_share']:.0%} of operators on the NPU, SRAM {v['sram_kib']:.1f} KiB, "
              f"flash {v['on_chip_flash_kib'] + v['off_chip_flash_kib']:.1f} KiB, {v['cycles_total']:.0f} cycles, "
              f"{v['inference_time_s'] * 1e3:.3f} ms at {v['clock_hz'] / 1e6:g} MHz")
    print(f"{len(man['files'])} files{', signed' if 'signature' in man else ''} -> {args.out}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from firmware_bridge.bundle import BundleError, verify_bundle
    from firmware_bridge.bundle.verify import NOT_AUTHENTICATED

    try:
        report = verify_bundle(args.bundle, pubkey=args.pubkey, on=args.on, tflm=args.tflm,
                               require_signature=args.require_signature)
    except BundleError as exc:
        if exc.report is not None:
            _print_checks(exc.report)
        raise
    _print_checks(report)
    if report.authenticated:
        print(f"{args.bundle}: bundle verified and authenticated ({report.target}, signed by the key {args.pubkey})")
        return 0
    # Keyless: integrity only. Exit 0 (README: an unsigned bundle is still checked), said where it cannot be missed.
    print(f"{args.bundle}: integrity verified, {NOT_AUTHENTICATED} ({report.target})")
    print(f"ecg-edge: warning: {args.bundle}: {NOT_AUTHENTICATED}; give --pubkey (and --require-signature "
          "to make this an error)", file=sys.stderr)
    return 0


def _print_checks(report) -> None:
    for name, status, detail in report.rows():
        print(f"{name:26s} {status:8s} {detail}")


def cmd_keygen(args: argparse.Namespace) -> int:
    require("cryptography", "edge", "keygen")
    from firmware_bridge.bundle import keygen

    priv, pub = keygen(args.out)
    print(f"private key (keep it secret, mode 0600): {priv}\npublic key (give it to the vendor): {pub}")
    return 0


# --- compare ----------------------------------------------------------------------------------

def cmd_compare(args: argparse.Namespace) -> int:
    for module in ("torch", "executorch", "ai_edge_litert", "onnxruntime"):
        require(module, "export", "compare")
    require("matplotlib", "train", "compare")
    from distill.compare import compare, print_table

    out = Path(args.out)
    report = compare(args.student, args.artifacts, out, teacher=args.teacher, data=args.data, n_boot=args.n_boot,
                     threads=args.threads, latency_runs=args.latency_runs, ram=not args.no_ram, tflm=not args.no_tflm,
                     seed=args.seed, log=lambda m: print(m, file=sys.stderr), progress=_progress("compare"))
    print_table(report)
    print(f"-> {out / 'compare.html'}, {out / 'compare.json'}")
    return 0


# --- demo -------------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    for module, extra in (("neurokit2", "train"), ("executorch", "export"), ("litert_torch", "export"),
                          ("tflite_micro", "export"), ("ai_edge_litert", "edge"), ("bumble", "virtual")):
        require(module, extra, "demo")
    from ecg_edge.demo import run_demo

    return run_demo(config=args.config, out=Path(args.out), progress=_progress("demo"), data=args.data)


# --- parser -----------------------------------------------------------------------------------

class CliParser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors: a bad flag value, an unknown flag or a missing
    argument prints `ecg-edge: error: <what>` and exits 2, without the usage block (`--help` still
    prints it). Subparsers are made with the parent's class, so every subcommand inherits this."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"ecg-edge: error: {' '.join(message.split())}\n")


def _number(kind: type, expected: str, ok: Callable[[Any], bool]) -> Callable[[str], Any]:
    """An argparse `type=`: `kind(text)` if `ok`, else "argument --x: expected <expected>, got <text>"."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    parse.__name__ = expected  # argparse's fallback message names the type by it
    return parse


positive_int = _number(int, "a positive integer", lambda v: v > 0)
non_negative_int = _number(int, "a non-negative integer", lambda v: v >= 0)
positive_float = _number(float, "a positive number", lambda v: math.isfinite(v) and v > 0)
non_negative_float = _number(float, "a non-negative number", lambda v: math.isfinite(v) and v >= 0)
drop_fraction = _number(float, "a fraction 0 <= x < 1", lambda v: 0 <= v < 1)
label_fraction = _number(float, "a fraction 0 < x <= 1", lambda v: 0 < v <= 1)


def _stream_options(st: argparse.ArgumentParser) -> None:
    st.add_argument("--model", help="artifact (manifest.json, its folder or the model file); without it: beats, HR and quality only")
    st.add_argument("--backend", choices=("litert", "tflite_runtime", "tflite_micro", "executorch", "onnxruntime"),
                    help="override the artifact's runtime (tflite_micro: the host TFLite Micro interpreter)")
    st.add_argument("--threads", type=positive_int, default=1)
    st.add_argument("--lead", help="lead to stream, by name (default: the record's first lead; I for synthetic)")
    st.add_argument("--row", type=non_negative_int, help="row of a (k, n) .npy to stream, 0-based (required when "
                    "k > 1; a .npy of one lead is (n,) or (1, n))")
    st.add_argument("--fs", type=positive_float, help="sampling rate of a .npy replay; rate of the synthetic source "
                    "(default 250)")
    st.add_argument("--seconds", type=non_negative_float, default=0.0,
                    help="stop after this much signal (0: all of it); synthetic length (default 60)")
    st.add_argument("--condition", help="rhythm of the synthetic source: NORM (default), AFIB (or AF), SBRAD, STACH, "
                    "WQRS")
    st.add_argument("--speed", type=positive_float, default=1.0, help="replay speed, 1.0 = real time")
    st.add_argument("--fast", action="store_true", help="replay as fast as possible")
    st.add_argument("--chunk", type=positive_int, default=73,
                    help="samples per chunk for replay (73 = one Polar H10 notification)")
    st.add_argument("--seed", type=non_negative_int, default=0, help="seed of the synthetic source and of injected faults")
    st.add_argument("--profile", choices=("polar", "open"), default="polar", help="BLE profile")
    st.add_argument("--bridge-max-s", type=positive_float, default=1.0, help="longest gap bridged by interpolation (s)")
    st.add_argument("--jsonl", help="write windows and events as JSON lines here")
    st.add_argument("--csv", help="write one row per window here")
    st.add_argument("--audit", metavar="PATH.npz",
                    help="write every window's model input and raw output and every R peak here (to compare two machines)")
    st.add_argument("--no-live", action="store_true", help="no live terminal view")
    st.add_argument("--no-beats", action="store_true", help="skip R-peak detection and heart rate")


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="ecg-edge", description="ECG foundation models distilled to the edge.")
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>")

    data = sub.add_parser("data", help="download datasets, build preprocessed shards").add_subparsers(
        dest="data_command", required=True, metavar="<data command>")
    d = data.add_parser("download", help="download a PhysioNet dataset (resumable, SHA-256 verified)")
    from train.data.sources import DOWNLOADABLE  # the dataset registry: torch-free, numpy only

    d.add_argument("dataset", choices=DOWNLOADABLE)
    d.add_argument("dest", help="destination folder")
    d.add_argument("--base-url", help="mirror or local server to download from (default: physionet.org)")
    d.add_argument("--include", nargs="+", help="glob patterns of files to fetch (default: the dataset's usual set)")
    d.add_argument("--with-optional", nargs="+", metavar="GROUP", help="optional groups, e.g. records500 for PTB-XL")
    d.add_argument("--workers", type=positive_int, default=4)
    d.set_defaults(func=cmd_data_download)

    b = data.add_parser("build", help="preprocess a dataset once into memory-mapped shards")
    b.add_argument("--config", help="pipeline TOML (default: built-in synthetic defaults; see configs/)")
    b.add_argument("--source", help="override data.source: synthetic | ptbxl:PATH | cinc2017:PATH | mitdb:PATH")
    b.add_argument("--n-records", type=positive_int, help="override data.n_records (synthetic)")
    b.add_argument("--out", required=True, help="output folder (must not hold shards already)")
    b.add_argument("--workers", type=positive_int, default=1, help="preprocessing processes")
    b.set_defaults(func=cmd_data_build)

    i = data.add_parser("info", help="summarise a shard folder")
    i.add_argument("path")
    i.set_defaults(func=cmd_data_info)

    st = sub.add_parser("stream", help="stream a recording, synthetic ECG or a BLE wearable through the runtime")
    st.add_argument("--source", required=True,
                    help="replay:PATH (WFDB record or .npy in mV) | synthetic | ble:NAME_OR_ADDRESS (empty: first found)")
    _stream_options(st)
    st.set_defaults(func=cmd_stream)

    we = sub.add_parser("wearable", help="try the stack without hardware: a virtual wearable (bumble) replays a "
                                         "recording over BLE to the runtime through bleak's API")
    we.add_argument("--replay", required=True, help="WFDB record or .npy (mV; give --fs, and --row for a (k, n) "
                    "array) to replay")
    we.add_argument("--drop", type=drop_fraction, default=0.0, help="fraction of notifications the wearable drops")
    we.add_argument("--disconnect-after", type=non_negative_int, nargs="+", metavar="N", help="force disconnects after N notifications")
    we.add_argument("--device-fs", type=positive_float, default=250.0, help="sample rate of the open profile (Polar is 130 Hz)")
    _stream_options(we)
    we.set_defaults(func=cmd_wearable)

    ble = sub.add_parser("ble", help="Bluetooth LE wearables").add_subparsers(dest="ble_command", required=True,
                                                                             metavar="<ble command>")
    sc = ble.add_parser("scan", help="list nearby BLE devices and the ECG profile each speaks")
    sc.add_argument("--timeout", type=positive_float, default=5.0)
    sc.set_defaults(func=cmd_ble_scan)

    pt = sub.add_parser("pretrain", help="pretrain a teacher: clip | fgclep | clef | ssl | supervised "
                                         "(torchrun for several processes)")
    pt.add_argument("--config", help="pipeline TOML with [pretrain] and [train] tables (see configs/pretrain/)")
    pt.add_argument("--objective", choices=("clip", "fgclep", "clef", "ssl", "supervised"), help="override pretrain.objective")
    pt.add_argument("--encoder", help="override pretrain.encoder (a registry name: --list-models)")
    pt.add_argument("--data", help="override data.source: synthetic | ptbxl:PATH | cinc2017:PATH")
    pt.add_argument("--shards", help="shard folder from `ecg-edge data build` (default: build the config's data in OUT/shards)")
    pt.add_argument("--out", help="output folder: checkpoint.pt, history.jsonl, config.json")
    pt.add_argument("--epochs", type=positive_int, help="override train.epochs")
    pt.add_argument("--batch-size", type=positive_int, help="override train.batch_size (per process)")
    pt.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override train.device")
    pt.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    pt.add_argument("--stop-after-epochs", type=positive_int, metavar="N", help="end this run after N epochs (resume later)")
    pt.add_argument("--list-models", action="store_true", help="list the model registry and exit")
    pt.set_defaults(func=cmd_pretrain)

    ev = sub.add_parser("evaluate", help="linear probe / fine-tune / zero-shot of teachers with bootstrap CIs, "
                                         "fairness gaps, saliency")
    ev.add_argument("--checkpoint", nargs="+", required=True, help="pretraining checkpoint(s) (checkpoint.pt or its folder)")
    ev.add_argument("--shards", help="shard folder to evaluate on (train split for probes; --splits for figures)")
    ev.add_argument("--out", required=True, help="folder for evaluation.json, evaluation.md and the saliency PNG")
    ev.add_argument("--fractions", type=label_fraction, nargs="+", default=[0.01, 0.1, 1.0], help="label fractions of the training records")
    ev.add_argument("--splits", nargs="+", default=["val", "test"], help="evaluation splits (PTB-XL: val = fold 9, test = fold 10)")
    ev.add_argument("--finetune", action="store_true", help="also fine-tune each encoder with a linear head on each fraction")
    ev.add_argument("--finetune-epochs", type=positive_int, default=10)
    ev.add_argument("--no-random-init", action="store_true", help="skip the randomly initialised encoder baseline")
    ev.add_argument("--no-zero-shot", action="store_true")
    ev.add_argument("--no-fairness", action="store_true")
    ev.add_argument("--no-saliency", action="store_true")
    ev.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples for the 95 %% CIs")
    ev.add_argument("--seed", type=non_negative_int, default=0)
    ev.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ev.set_defaults(func=cmd_evaluate)

    di = sub.add_parser("distill", help="distil a teacher into a single-lead student (and train the label-only baseline)")
    di.add_argument("--teacher", help="pretraining checkpoint (none: only the label-only student)")
    di.add_argument("--config", help="pipeline TOML with [distill] and [train] tables (see configs/distill/)")
    di.add_argument("--shards", help="shard folder (default: the one the teacher was pretrained on)")
    di.add_argument("--out", required=True, help="folder for distilled/, baseline/ and distill.json")
    di.add_argument("--student", help="override distill.student (student_xs | student_s | student_m | test_student)")
    di.add_argument("--lead", help="override distill.lead (the student's one lead, by name)")
    di.add_argument("--epochs", type=positive_int, help="override train.epochs")
    di.add_argument("--batch-size", type=positive_int, help="override train.batch_size")
    di.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override train.device")
    di.add_argument("--no-baseline", action="store_true", help="skip the label-only student")
    di.add_argument("--no-labels", action="store_true", help="pure distillation: no ground-truth loss")
    di.add_argument("--n-boot", type=positive_int, default=1000)
    di.set_defaults(func=cmd_distill)

    def release_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--student", required=True, help="student checkpoint from `ecg-edge distill` (e.g. runs/ptbxl_students/distilled)")
        p.add_argument("--out", required=True, help="folder for the artifacts and the summary JSON")
        p.add_argument("--fs-device", type=positive_float, help="device input rate whose filter design goes into each "
                       "manifest (default: the rate the training data was recorded at)")
        p.add_argument("--qat-epochs", type=non_negative_int, default=2, help="QAT fine-tune epochs (qat, brevitas)")
        p.add_argument("--qat-lr", type=positive_float, default=1e-4)
        p.add_argument("--n-boot", type=positive_int, default=1000)
        p.add_argument("--threads", type=positive_int, default=1, help="runtime threads for parity and scoring")

    qu = sub.add_parser("quantize", help="int8 artifacts of a student by PT2E PTQ, PT2E QAT or Brevitas QAT, "
                        "each parity-checked and scored")
    release_options(qu)
    qu.add_argument("--method", nargs="+", choices=("ptq", "qat", "brevitas"), default=["ptq"])
    qu.set_defaults(func=cmd_quantize)

    ex = sub.add_parser("export", help="every artifact of a student (.pte/.bpte, .tflite, .onnx; fp32 and int8) "
                        "with manifests, parity, scores, Vela and Cortex-M")
    release_options(ex)
    ex.add_argument("--quant", choices=("ptq", "qat"), default="ptq", help="int8 method for .pte and .tflite")
    ex.add_argument("--brevitas", action="store_true", help="also the Brevitas QAT int8 ONNX (onnx-int8)")
    ex.add_argument("--no-embedded", action="store_true", help="skip Vela and the Cortex-M lowering")
    ex.set_defaults(func=cmd_export)

    pk = sub.add_parser("package", help="a vendor bundle for one target: model, C array, arena / Vela figures, "
                        "golden tests, manifest with checksums, README; optionally signed")
    pk.add_argument("--artifact", required=True, help="int8 artifact folder: tflite-int8 for tflm / ethos-u*, "
                    "pte-int8 for xnnpack / cortex-m")
    pk.add_argument("--target", required=True, choices=("tflm", "cortex-m55", "ethos-u55-128", "ethos-u65-256",
                                                        "cortex-m", "xnnpack"),
                    help="tflm / cortex-m55: TFLite Micro with a firmware project (cortex-m55 builds and measures it "
                         "on an emulated Cortex-M55); ethos-u*: Vela; xnnpack / cortex-m: ExecuTorch .pte")
    pk.add_argument("--out", required=True, help="new folder for the bundle")
    pk.add_argument("--golden", help="golden windows .npy (default: golden.npy beside the artifact folder)")
    pk.add_argument("--no-firmware", action="store_true",
                    help="tflm: write no firmware project (the vendor's own firmware flashes model_data.c)")
    pk.add_argument("--sign", metavar="KEY", help="Ed25519 private key (PEM, from `ecg-edge keygen`) to sign the manifest")
    pk.add_argument("--headroom", type=non_negative_float, default=0.25, help="arena headroom over the measured figure (fraction)")
    pk.add_argument("--c-name", default="ecg_model", help="C identifier of the model array")
    pk.add_argument("--tflm", metavar="DIR", help="vendored TFLite Micro + CMSIS-NN (folder with "
                    "tflite-micro-cmsis-nn.tar.xz, or an unpacked tree; default $ECG_EDGE_TFLM or "
                    "../shared/vendor/tflite-micro)")
    pk.set_defaults(func=cmd_package)

    ve = sub.add_parser("verify", help="check a vendor bundle: checksums, signature, C array, golden outputs")
    ve.add_argument("bundle", help="bundle folder from `ecg-edge package`")
    ve.add_argument("--pubkey", help="Ed25519 public key (PEM) the manifest must be signed with; without it "
                    "verify checks integrity only, NOT authenticity")
    ve.add_argument("--require-signature", action="store_true", help="fail unless the bundle is signed and the "
                    "signature checks with --pubkey (default: a keyless verify passes on integrity, with a warning)")
    ve.add_argument("--on", choices=("qemu",), help="also build the bundle's firmware and run it: qemu = the "
                    "Cortex-M55 image on QEMU's mps3-an547 against the same sources built for this host")
    ve.add_argument("--tflm", metavar="DIR", help="vendored TFLite Micro tree for --on (as for package)")
    ve.set_defaults(func=cmd_verify)

    kg = sub.add_parser("keygen", help="an Ed25519 key pair for signing bundles")
    kg.add_argument("--out", required=True, help="folder for signing_key.pem (0600) and signing_key.pub.pem")
    kg.set_defaults(func=cmd_keygen)

    co = sub.add_parser("compare", help="int8 artifacts vs the fp32 student and teacher on the same windows: per-class "
                        "metrics with CIs, paired differences, agreement, calibration, fairness, size, latency, RAM "
                        "(HTML + JSON + table)")
    co.add_argument("--student", required=True, help="student checkpoint (ecg-edge distill)")
    co.add_argument("--artifacts", required=True, help="folder of ecg-edge export / quantize (every manifest.json in it)")
    co.add_argument("--teacher", help="teacher checkpoint (ecg-edge pretrain), run in fp32 on all its leads")
    co.add_argument("--data", help="synthetic | ptbxl:PATH | cinc2017:PATH (default: the shards the student was "
                    "trained on; another dataset is preprocessed as the student's was)")
    co.add_argument("--out", default="runs/compare", help="output folder (default: runs/compare)")
    co.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples of records (default 1000)")
    co.add_argument("--threads", type=positive_int, default=1, help="CPU threads of every runtime (default 1)")
    co.add_argument("--latency-runs", type=positive_int, default=50, help="batch-1 calls timed per model (default 50)")
    co.add_argument("--no-ram", action="store_true", help="skip the per-model peak memory probes (a process each)")
    co.add_argument("--no-tflm", action="store_true", help="skip running int8 .tflite models on TFLite Micro too")
    co.add_argument("--seed", type=non_negative_int, default=0, help="seed of the teacher's probe (non-supervised teachers)")
    co.set_defaults(func=cmd_compare)

    be = sub.add_parser("bench", help="run a benchmark from bench/ (JSON on stdout)")
    be.add_argument("name", choices=BENCHMARKS, help="preprocess | runtime | rpeaks (MIT-BIH) | ble | train (teacher throughput) | "
                    "models (student sizes and latency per format vs the teacher) | package (vendor bundle figures per target) | "
                    "firmware (the bundle's firmware on the emulated Cortex-M55: flash, RAM, instructions) | "
                    "soak (hours of accelerated stream: RSS and window latency per simulated hour)")
    be.add_argument("rest", nargs=argparse.REMAINDER, help="options passed to the benchmark (see its --help)")
    be.set_defaults(func=cmd_bench)

    demo = sub.add_parser("demo", help="the main job: data -> teacher -> evaluation -> single-lead student -> int8 "
                          "export -> vendor bundle -> BLE stream -> comparison report, on built-in synthetic data")
    demo.add_argument("--config", help="pipeline TOML (default: built-in defaults, configs/default.toml)")
    demo.add_argument("--data", help="override data.source: synthetic | ptbxl:PATH | cinc2017:PATH")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EcgEdgeError as exc:
        print(f"ecg-edge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ecg-edge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
