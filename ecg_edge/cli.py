"""The one CLI: `ecg-edge <subcommand>`, subcommands in pipeline order.

`main(argv) -> int` so tests call it directly. Each handler imports its heavy modules inside the
handler; a missing optional dependency prints one line naming the extra to install. Every
`EcgEdgeError` is printed as one line (`ecg-edge: error: ...`) with exit status 2. The subcommands'
parsers (below the handlers) are built from the shared vocabulary of `ecg_edge.flags`: one meaning
per flag, old spellings, flags bound to config keys, -v / -q.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from edge_runtime.errors import EcgEdgeError
from edge_runtime.errors import require as _require
from ecg_edge.flags import (METHODS, CliParser, Deprecated, bind, command_table, config_flag, data_flag, device_flag,
                            drop_fraction, label_fraction, leaves, non_negative_float, non_negative_int, out_flag,
                            package_version, positive_float, positive_int, resolve_config, set_verbosity,
                            verbosity_flags, write_table)

#: The CLI's own notes (progress lines on stderr); -q silences them, -v adds DEBUG lines (`set_verbosity`).
_LOG = logging.getLogger("ecg_edge")


def require(module: str, extra: str, command: str) -> Any:
    """Import `module` for `ecg-edge <command>`, or raise MissingExtraError naming its package and extra."""
    return _require(module, extra, f"`ecg-edge {command}`")


def _progress(command: str) -> Callable | None:
    """tqdm if installed (train extra) and not -q, else no progress bar."""
    if not _LOG.isEnabledFor(logging.INFO):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return lambda it, total=None, desc=None: tqdm(it, total=total, desc=desc, unit="rec", file=sys.stderr)


def _notes() -> Callable[[str], None]:
    """`print`, for the progress lines a library function writes to stdout (its `log=`); silent under -q."""
    return print if _LOG.isEnabledFor(logging.INFO) else (lambda line: None)


# --- data -------------------------------------------------------------------------------------

def cmd_data_download(args: argparse.Namespace) -> int:
    from edge_runtime.errors import ConfigError
    from train.data.download import download, include_patterns

    if not args.out:
        raise ConfigError("--out: required (the destination folder)")
    include = args.include or include_patterns(args.dataset, optional=args.with_optional or [])
    def progress(path: str, done: int, total: int) -> None:
        if total > 0 and done >= total:
            _LOG.info(f"  {path} ({total:,} bytes)")

    report = download(args.dataset, Path(args.out), base_url=args.base_url, include=include,
                      workers=args.workers, progress=progress)
    print(f"{args.dataset}: {len(report.downloaded)} downloaded ({len(report.resumed)} resumed), "
          f"{len(report.skipped)} already verified, {report.bytes_received:,} bytes -> {args.out}")
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    require("wfdb", "train", "data build")
    from edge_runtime.config import write_json
    from train.data.shards import build_shards

    cfg = resolve_config(args)
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

def _stream_opts(args: argparse.Namespace, what: str):
    """The `[stream]` table with the flags applied (`ecg_edge.stream.StreamOptions`); `what`: the
    sources the command takes, for the error when there is none."""
    return command_table(args, ("source", what))


def _run_stream(args: argparse.Namespace, opts: Any, source: str | None = None) -> int:
    """Stream `opts` (`--fast`: as fast as it goes; the live view on a terminal unless --no-live), then
    write the options beside the first output file (`a.jsonl` -> `a.config.json`)."""
    from ecg_edge.stream import run

    opts = replace(opts, speed=None if args.fast else opts.speed, live=not args.no_live and sys.stdout.isatty())
    rc = run(replace(opts, source=source or opts.source))
    outputs = [p for p in (opts.jsonl, opts.csv, opts.audit) if p]
    if outputs:
        write_table(Path(outputs[0]).with_suffix(".config.json"), args, opts)
    return rc


def cmd_stream(args: argparse.Namespace) -> int:
    return _run_stream(args, _stream_opts(args, "replay:PATH | synthetic | ble:NAME_OR_ADDRESS"))


def cmd_wearable(args: argparse.Namespace) -> int:
    from edge_runtime.errors import ConfigError

    opts = _stream_opts(args, "replay:PATH, the recording the virtual wearable replays")
    kind, _, path = opts.source.partition(":")
    if kind != "replay" or not path.strip():
        raise ConfigError(f"--source: expected replay:PATH (a WFDB record or a .npy in mV) for the virtual wearable "
                          f"to replay, got {opts.source!r}")
    return _run_stream(args, opts, source=f"virtual:{path}")


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
              "soak": "soak.py", "hotpaths": "hotpaths.py", "short": "short_records.py", "flips": "int8_flips.py"}
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
    cfg = resolve_config(args)
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
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    results = run_evaluate(args.checkpoint, args.shards, Path(args.out), opts, device=device)
    print(f"{'model':28s} {'setting':22s} {'macro AUROC':24s} macro PRAUC")
    for run in results["runs"]:
        m = run["metrics"]
        print(f"{run['model']:28s} {run['setting']:22s} {fmt_ci(m['auroc']['macro']):24s} {fmt_ci(m['prauc']['macro'])}")
    print(f"-> {Path(args.out) / 'evaluation.json'}, {Path(args.out) / 'evaluation.md'}"
          + (f", {results['saliency_png']}" if results["saliency_png"] else ""))
    return 0


def _student_shards(args: argparse.Namespace, what: str) -> str:
    """`--shards`, else the shards the `--teacher` was pretrained on (distill, cv)."""
    from edge_runtime.errors import ConfigError

    if args.shards is not None:
        return args.shards
    if not args.teacher:
        raise ConfigError(f"--shards: required without --teacher (the shard folder to {what})")
    from train.engine import load_checkpoint

    return load_checkpoint(args.teacher)["meta"]["shards"]


def cmd_distill(args: argparse.Namespace) -> int:
    require("torch", "train", "distill")
    from distill.distill import distill_students
    from edge_runtime.config import write_json
    from train.evaluate import fmt_ci

    cfg = resolve_config(args)
    shards = _student_shards(args, "train the student on")
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


def cmd_cv(args: argparse.Namespace) -> int:
    require("torch", "train", "distill")
    from distill.crossval import run_cv
    from edge_runtime.config import write_json
    from train.evaluate import fmt_ci

    cfg = resolve_config(args)
    shards = _student_shards(args, "cross-validate on")
    out = Path(args.out)
    res = run_cv(shards, args.teacher, cfg.distill, cfg.train, cfg.cv, out, n_boot=args.n_boot)
    write_json(out / "config.json", cfg)
    key = res["decision_metric"]
    print(f"{res['dataset']}: lead {res['lead']}, {res['folds']}-fold cross-validation over {res['records']} "
          f"{'+'.join(res['pool'])} records (out-of-fold, per record)")
    print(f"{'candidate':34s} {'record':6s} {'macro AUROC':24s} " + "  ".join(f"{key} ({r})" for r in res["rules"]))
    for c in res["candidates"]:
        for rr in res["record_rules"]:
            print(f"{c['what'][:34]:34s} {rr:6s} {fmt_ci(c['ranking'][rr]['auroc']['macro']):24s} "
                  + "  ".join(f"{fmt_ci(c['record_rules'][rr][r][key]):24s}" for r in res["rules"]))
    ch = res["chosen"]
    print(f"chosen: {ch['what']}, record = {ch['record_rule']} over windows, {ch['rule']} thresholds " + ", ".join(
        f"{lab} {t:.2f}" for lab, t in zip(res["labels"], ch["thresholds"])))
    if "int8" in res:
        q = res["int8"]
        print(f"int8 out of fold: {key} {fmt_ci(q[key])}, {q['agreement_records']:.4f} of records agree with fp32; "
              "bands " + ", ".join(f"{lab} {b:.3f}" for lab, b in zip(res["labels"], q["bands"])))
    for name, m in (res.get("final") or {}).get("models", {}).items():
        dec = m.get("decisions") or {}
        d = dec.get("challenge_f1") or (dec.get("f1") or {}).get("macro")
        print(f"final {name} on {'+'.join(res['final']['eval_splits'])} (scored once): macro AUROC "
              f"{fmt_ci(m['metrics']['auroc']['macro'])}" + (f", {key} {fmt_ci(d)}" if d else ""))
    print(f"-> {out / 'cv.json'}" + (f", {res['final']['checkpoint']}" if "final" in res else ""))
    return 0


def _release(args: argparse.Namespace, t: Any, *, fp32: bool, embedded: bool, name: str) -> int:
    """`quantize` / `export` with their resolved table `t` (`ecg_edge.config.QuantizeConfig`)."""
    from distill.release import release, summary_rows
    from firmware_bridge.bundle.vela import vela_compile

    summary = release(t.student, args.out, methods=t.method, fp32=fp32, embedded=embedded,
                      fs_device=t.device_fs, qat_epochs=t.qat_epochs, qat_lr=t.qat_lr, n_boot=t.n_boot,
                      threads=t.threads, summary_name=name, log=_notes(), vela=vela_compile)
    write_table(Path(args.out) / "config.json", args, t)
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
    t = command_table(args, ("student", "the student checkpoint from `ecg-edge distill`"))
    for module in ("torch", "executorch", "litert_torch"):
        require(module, "export", "quantize")
    return _release(args, t, fp32=False, embedded=False, name="quantize.json")


def cmd_export(args: argparse.Namespace) -> int:
    t = command_table(args, ("student", "the student checkpoint from `ecg-edge distill`"))
    for module in ("torch", "executorch", "litert_torch"):
        require(module, "export", "export")
    return _release(args, t, fp32=True, embedded=t.embedded, name="export.json")


# --- vendor bundles ---------------------------------------------------------------------------

def cmd_package(args: argparse.Namespace) -> int:
    from firmware_bridge.bundle import package

    t = command_table(args, ("artifact", "the int8 artifact folder of `ecg-edge export`"), ("target", "the vendor target"))
    man = package(t.artifact, t.target, args.out, golden=t.golden, sign_key=t.sign, headroom=t.headroom,
                  c_name=t.c_name, tflm=t.tflm, firmware=t.firmware, log=_notes())
    write_table(f"{Path(args.out)}.config.json", args, t)  # beside the bundle: verify refuses unlisted files
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
    t = command_table(args, ("student", "the student checkpoint from `ecg-edge distill`"),
               ("artifacts", "the folder of `ecg-edge export` / `quantize`"))
    for module in ("torch", "executorch", "ai_edge_litert", "onnxruntime"):
        require(module, "export", "compare")
    require("matplotlib", "train", "compare")
    from distill.compare import compare, print_table

    out = Path(args.out)
    report = compare(t.student, t.artifacts, out, teacher=t.teacher, data=t.data, n_boot=t.n_boot, threads=t.threads,
                     latency_runs=t.latency_runs, ram=t.ram, tflm=t.tflm, seed=t.seed, split=t.split, short=t.short,
                     log=_LOG.info,
                     progress=_progress("compare"))
    write_table(out / "config.json", args, t)
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


# --- the parsers (flags: ecg_edge.flags) --------------------------------------------------------

def _data_parsers(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="download datasets, build preprocessed shards").add_subparsers(
        dest="data_command", required=True, metavar="<data command>")
    from train.data.sources import DOWNLOADABLE

    d = data.add_parser("download", help="download a PhysioNet dataset (resumable, SHA-256 verified)")
    d.add_argument("dataset", choices=DOWNLOADABLE, help="the dataset")
    d.add_argument("dest", nargs="?", action=Deprecated, new="--out DEST", target="out", metavar="DEST")
    d.add_argument("--out", metavar="DIR", help="destination folder")
    d.add_argument("--base-url", help="mirror or local server to download from (default: physionet.org)")
    d.add_argument("--include", nargs="+", help="glob patterns of files to fetch (default: the dataset's usual set)")
    d.add_argument("--with-optional", nargs="+", metavar="GROUP", help="optional groups, e.g. records500 for PTB-XL")
    d.add_argument("--workers", type=positive_int, default=4, help="parallel downloads")
    d.set_defaults(func=cmd_data_download)

    b = data.add_parser("build", help="preprocess a dataset once into memory-mapped shards")
    config_flag(b, "[data], [preprocess], shard_windows")
    data_flag(b)
    b.add_argument("--source", action=Deprecated, new="--data", target="data")
    b.add_argument("--n-records", type=positive_int, help="records of the synthetic dataset")
    out_flag(b, "the shards (must not hold shards already)")
    b.add_argument("--workers", type=positive_int, default=1, help="preprocessing processes")
    bind(b, data="data.source", n_records="data.n_records")
    b.set_defaults(func=cmd_data_build)

    i = data.add_parser("info", help="summarise a shard folder")
    i.add_argument("path", help="shard folder from `ecg-edge data build`")
    i.set_defaults(func=cmd_data_info)


def _stream_options(st: argparse.ArgumentParser) -> None:
    """The flags `stream` and `wearable` share; all bound to the [stream] table but --fast and --no-live."""
    config_flag(st, "[stream]")
    st.add_argument("--artifact", metavar="PATH", help="artifact (manifest.json, its folder or the model file); "
                    "without it: beats, HR and quality only")
    st.add_argument("--model", action=Deprecated, new="--artifact", target="artifact")
    from edge_runtime.backends import BACKENDS

    st.add_argument("--backend", choices=BACKENDS.names(), help="override the artifact's runtime (tflite_micro: the "
                    "host TFLite Micro interpreter)")
    st.add_argument("--threads", type=positive_int, help="runtime threads")
    st.add_argument("--lead", help="lead to stream, by name (default: the record's first lead; I for synthetic)")
    st.add_argument("--row", type=non_negative_int, help="row of a (k, n) .npy to stream, 0-based (required when "
                    "k > 1; a .npy of one lead is (n,) or (1, n))")
    st.add_argument("--fs", type=positive_float, metavar="HZ", help="sampling rate of a .npy replay; rate of the "
                    "synthetic source (default 250)")
    st.add_argument("--seconds", type=non_negative_float, help="stop after this much signal (0: all of it); "
                    "synthetic length (0: 60)")
    st.add_argument("--condition", help="rhythm of the synthetic source: NORM (default), AFIB (or AF), SBRAD, STACH, "
                    "WQRS")
    st.add_argument("--speed", type=positive_float, help="replay speed, 1.0 = real time")
    st.add_argument("--fast", action="store_true", help="replay as fast as possible (speed = \"none\" in [stream])")
    st.add_argument("--chunk", type=positive_int, help="samples per chunk for replay (73 = one Polar H10 notification)")
    st.add_argument("--seed", type=non_negative_int, help="seed of the synthetic source and of injected faults")
    st.add_argument("--profile", choices=("polar", "open"), help="BLE profile")
    st.add_argument("--bridge-max-s", type=positive_float, help="longest gap bridged by interpolation (s)")
    st.add_argument("--jsonl", metavar="PATH", help="write windows and events as JSON lines here")
    st.add_argument("--csv", metavar="PATH", help="write one row per window here")
    st.add_argument("--audit", metavar="PATH.npz",
                    help="write every window's model input and raw output and every R peak here (to compare two machines)")
    st.add_argument("--no-live", action="store_true", help="no live terminal view (it shows only on a terminal)")
    st.add_argument("--no-beats", dest="beats", action="store_false", help="skip R-peak detection and heart rate")
    from ecg_edge.stream import StreamOptions

    st.add_argument("--short", choices=StreamOptions.SHORT, help="a stream that ends before its first window: pad = "
                    "classified on one window, its samples repeated from their start up to the window (flagged "
                    "padded); too-short = no decision, it ends with the explicit 'too short' line")


def _stream_parsers(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser("stream", help="stream a recording, synthetic ECG or a BLE wearable through the runtime")
    st.add_argument("--source", metavar="SPEC", help="replay:PATH (WFDB record or .npy in mV) | synthetic | "
                    "ble:NAME_OR_ADDRESS (empty: first found)")
    _stream_options(st)
    bind(st, "stream")
    st.set_defaults(func=cmd_stream)

    we = sub.add_parser("wearable", help="try the stack without hardware: a virtual wearable (bumble) replays a "
                                         "recording over BLE to the runtime through bleak's API")
    we.add_argument("--source", metavar="replay:PATH", help="the recording the wearable replays: replay:PATH, a WFDB "
                    "record or a .npy (mV; give --fs, and --row for a (k, n) array)")
    we.add_argument("--replay", metavar="PATH", action=Deprecated, new="--source replay:PATH", target="source",
                    to=lambda path, _: f"replay:{path}")
    we.add_argument("--drop", type=drop_fraction, help="fraction of notifications the wearable drops")
    we.add_argument("--disconnect-after", type=non_negative_int, nargs="+", metavar="N",
                    help="force disconnects after N notifications")
    we.add_argument("--device-fs", type=positive_float, metavar="HZ",
                    help="sample rate the wearable delivers with the open profile (Polar is 130 Hz)")
    _stream_options(we)
    bind(we, "stream")
    we.set_defaults(func=cmd_wearable)

    ble = sub.add_parser("ble", help="Bluetooth LE wearables").add_subparsers(dest="ble_command", required=True,
                                                                             metavar="<ble command>")
    sc = ble.add_parser("scan", help="list nearby BLE devices and the ECG profile each speaks")
    sc.add_argument("--timeout", type=positive_float, default=5.0, help="seconds to scan")
    sc.set_defaults(func=cmd_ble_scan)


def _teacher_parsers(sub: argparse._SubParsersAction) -> None:
    pt = sub.add_parser("pretrain", help="pretrain a teacher: clip | fgclep | clef | ssl | supervised "
                                         "(torchrun for several processes)")
    config_flag(pt, "[data], [preprocess], [pretrain], [train]; configs/pretrain/")
    pt.add_argument("--objective", choices=("clip", "fgclep", "clef", "ssl", "supervised"), help="the teacher's objective")
    pt.add_argument("--arch", metavar="NAME", help="the teacher's registry name (--list-models)")
    pt.add_argument("--encoder", action=Deprecated, new="--arch", target="arch")
    data_flag(pt)
    pt.add_argument("--shards", metavar="DIR", help="shard folder from `ecg-edge data build` (default: build the "
                    "config's data in OUT/shards)")
    pt.add_argument("--out", metavar="DIR", help="output folder: checkpoint.pt, history.jsonl, config.json")
    pt.add_argument("--epochs", type=positive_int, help="training epochs")
    pt.add_argument("--batch-size", type=positive_int, help="batch size (per process)")
    device_flag(pt)
    pt.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    pt.add_argument("--stop-after-epochs", type=positive_int, metavar="N", help="end this run after N epochs (resume later)")
    pt.add_argument("--list-models", action="store_true", help="list the model registry and exit")
    bind(pt, data="data.source", objective="pretrain.objective", arch="pretrain.encoder", epochs="train.epochs",
          batch_size="train.batch_size", device="train.device")
    pt.set_defaults(func=cmd_pretrain)

    ev = sub.add_parser("evaluate", help="linear probe / fine-tune / zero-shot of teachers with bootstrap CIs, "
                                         "fairness gaps, saliency")
    ev.add_argument("--checkpoint", nargs="+", required=True, metavar="PATH",
                    help="teacher checkpoint(s) (checkpoint.pt or its folder)")
    ev.add_argument("--shards", metavar="DIR", help="shard folder to evaluate on (train split for probes; --splits "
                    "for figures)")
    out_flag(ev, "evaluation.json, evaluation.md and the saliency PNG", default="runs/evaluate")
    ev.add_argument("--fractions", type=label_fraction, nargs="+", default=[0.01, 0.1, 1.0],
                    help="label fractions of the training records")
    ev.add_argument("--splits", nargs="+", default=["val", "test"], help="evaluation splits (PTB-XL: val = fold 9, "
                    "test = fold 10)")
    ev.add_argument("--finetune", action="store_true", help="also fine-tune each encoder with a linear head on each fraction")
    ev.add_argument("--finetune-epochs", type=positive_int, default=10, help="epochs of each fine-tune")
    ev.add_argument("--no-random-init", action="store_true", help="skip the randomly initialised encoder baseline")
    ev.add_argument("--no-zero-shot", action="store_true", help="skip zero-shot classification (text teachers)")
    ev.add_argument("--no-fairness", action="store_true", help="skip the per-group (sex, age) gaps")
    ev.add_argument("--no-saliency", action="store_true", help="skip the saliency figure")
    ev.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples for the 95 %% CIs")
    ev.add_argument("--seed", type=non_negative_int, default=0, help="seed of the probes and the bootstrap")
    device_flag(ev, default="cpu")
    ev.set_defaults(func=cmd_evaluate)


def _release_options(p: argparse.ArgumentParser, table: str, default_out: str) -> None:
    """The flags `quantize` and `export` share, bound to their table."""
    config_flag(p, f"[{table}]")
    p.add_argument("--student", metavar="PATH", help="student checkpoint from `ecg-edge distill` (e.g. "
                   "runs/ptbxl_students/distilled)")
    out_flag(p, "the artifacts, the summary JSON and config.json", default=default_out)
    p.add_argument("--device-fs", type=positive_float, metavar="HZ", help="device input rate whose filter design goes "
                   "into each manifest (none: the rate the training data was recorded at)")
    p.add_argument("--fs-device", type=positive_float, action=Deprecated, new="--device-fs", target="device_fs")
    p.add_argument("--qat-epochs", type=non_negative_int, help="QAT fine-tune epochs (qat, brevitas)")
    p.add_argument("--qat-lr", type=positive_float, help="QAT learning rate")
    p.add_argument("--n-boot", type=positive_int, help="bootstrap resamples for the CIs")
    p.add_argument("--threads", type=positive_int, help="runtime threads for parity and scoring")


def _student_parsers(sub: argparse._SubParsersAction) -> None:
    di = sub.add_parser("distill", help="distil a teacher into a single-lead student (and train the label-only baseline)")
    di.add_argument("--teacher", metavar="PATH", help="teacher checkpoint (none: only the label-only student)")
    config_flag(di, "[distill], [train]; configs/distill/")
    di.add_argument("--shards", metavar="DIR", help="shard folder (default: the one the teacher was pretrained on)")
    out_flag(di, "distilled/, baseline/, distill.json and config.json")
    di.add_argument("--arch", metavar="NAME", help="the student's registry name "
                    "(student_xs | student_s | student_m | test_student)")
    di.add_argument("--student", action=Deprecated, new="--arch", target="arch")
    di.add_argument("--lead", help="the student's one lead, by name")
    di.add_argument("--epochs", type=positive_int, help="training epochs")
    di.add_argument("--batch-size", type=positive_int, help="batch size")
    device_flag(di)
    di.add_argument("--no-baseline", action="store_true", help="skip the label-only student")
    di.add_argument("--no-labels", dest="labels", action="store_false", help="pure distillation: no ground-truth loss")
    di.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples for the CIs")
    bind(di, arch="distill.student", lead="distill.lead", labels="distill.labels", epochs="train.epochs",
          batch_size="train.batch_size", device="train.device")
    di.set_defaults(func=cmd_distill)

    cv = sub.add_parser("cv", help="choose the student's configuration, thresholds and abstention bands by k-fold "
                        "cross-validation over train + validation records; train the final student; score the test part once")
    cv.add_argument("--teacher", metavar="PATH", help="teacher checkpoint (none: label-only students)")
    config_flag(cv, "[cv], [distill], [train]; configs/distill/")
    cv.add_argument("--shards", metavar="DIR", help="shard folder (default: the one the teacher was pretrained on)")
    out_flag(cv, "cv.json, oof.npz, folds/, final/ and config.json")
    cv.add_argument("--arch", metavar="NAME", help="the student's registry name")
    cv.add_argument("--epochs", type=positive_int, help="training epochs (candidates may override)")
    cv.add_argument("--folds", type=positive_int, help="k of the k-fold split")
    cv.add_argument("--no-int8", dest="int8", action="store_false", default=None,
                    help="skip the int8 out-of-fold scores (and so the abstention bands)")
    cv.add_argument("--no-final", dest="final", action="store_false", default=None,
                    help="stop after the cross-validation (no final student, no test-part score)")
    device_flag(cv)
    cv.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples for the CIs")
    bind(cv, arch="distill.student", epochs="train.epochs", folds="cv.folds", int8="cv.int8", final="cv.final",
         device="train.device")
    cv.set_defaults(func=cmd_cv)

    qu = sub.add_parser("quantize", help="int8 artifacts of a student by PT2E PTQ, PT2E QAT or Brevitas QAT, "
                        "each parity-checked and scored")
    _release_options(qu, "quantize", "runs/quantize")
    qu.add_argument("--method", nargs="+", choices=METHODS, help="int8 method(s)")
    bind(qu, "quantize")
    qu.set_defaults(func=cmd_quantize)

    ex = sub.add_parser("export", help="every artifact of a student (.pte/.bpte, .tflite, .onnx; fp32 and int8) "
                        "with manifests, parity, scores, Vela and Cortex-M")
    _release_options(ex, "export", "runs/export")
    ex.add_argument("--method", nargs="+", choices=METHODS, help="int8 method: ptq or qat for .pte and .tflite; "
                    "brevitas adds the Brevitas QAT onnx-int8")
    ex.add_argument("--quant", choices=("ptq", "qat"), action=Deprecated, new="--method", target="method",
                    to=lambda m, current: [m] + [x for x in current or () if x == "brevitas"])
    ex.add_argument("--brevitas", nargs=0, action=Deprecated, new="--method ... brevitas", target="method",
                    to=lambda _, current: list(dict.fromkeys([*(current or ["ptq"]), "brevitas"])))
    ex.add_argument("--no-embedded", dest="embedded", action="store_false", help="skip Vela and the Cortex-M lowering")
    bind(ex, "export")
    ex.set_defaults(func=cmd_export)

    co = sub.add_parser("compare", help="int8 artifacts vs the fp32 student and teacher on the same windows: per-class "
                        "metrics with CIs, paired differences, agreement, calibration, fairness, size, latency, RAM "
                        "(HTML + JSON + table)")
    config_flag(co, "[compare]")
    co.add_argument("--student", metavar="PATH", help="student checkpoint (ecg-edge distill)")
    co.add_argument("--artifacts", metavar="DIR", help="folder of ecg-edge export / quantize (every manifest.json in it)")
    co.add_argument("--teacher", metavar="PATH", help="teacher checkpoint (ecg-edge pretrain), run in fp32 on all its leads")
    data_flag(co, "default: the shards the student was trained on; another dataset is preprocessed as the "
               "student's was")
    out_flag(co, "compare.html, compare.json and config.json", default="runs/compare")
    co.add_argument("--n-boot", type=positive_int, help="bootstrap resamples of records")
    co.add_argument("--threads", type=positive_int, help="CPU threads of every runtime")
    co.add_argument("--latency-runs", type=positive_int, help="batch-1 calls timed per model")
    co.add_argument("--no-ram", dest="ram", action="store_false", help="skip the per-model peak memory probes "
                    "(a process each)")
    co.add_argument("--no-tflm", dest="tflm", action="store_false", help="skip running int8 .tflite models on "
                    "TFLite Micro too")
    co.add_argument("--seed", type=non_negative_int, help="seed of the teacher's probe (non-supervised teachers)")
    from ecg_edge.config import CompareConfig  # bind() imports it anyway

    co.add_argument("--split", choices=CompareConfig.SPLITS, help="records scored: eval = the student's evaluation "
                    "splits; all = every record of --data whatever split its hash gives it (a dataset never split: "
                    "your own recordings); train / val / test = that split. Thresholds stay the manifest's")
    co.add_argument("--short", choices=CompareConfig.SHORT, help="a record shorter than one window: pad = scored "
                    "on one window, its samples repeated from their start up to the window (flagged padded); "
                    "too-short = counted (n_records_too_short), not scored")
    bind(co, "compare")
    co.set_defaults(func=cmd_compare)


def _bundle_parsers(sub: argparse._SubParsersAction) -> None:
    pk = sub.add_parser("package", help="a vendor bundle for one target: model, C array, arena / Vela figures, "
                        "golden tests, manifest with checksums, README; optionally signed")
    config_flag(pk, "[package]")
    pk.add_argument("--artifact", metavar="DIR", help="int8 artifact folder: tflite-int8 for tflm / ethos-u*, "
                    "pte-int8 for xnnpack / cortex-m")
    from firmware_bridge.bundle.format import TARGETS

    pk.add_argument("--target", choices=TARGETS, help="tflm / cortex-m55: TFLite Micro with a firmware project "
                    "(cortex-m55 builds and measures it on an emulated Cortex-M55); ethos-u*: Vela; xnnpack / "
                    "cortex-m: ExecuTorch .pte")
    out_flag(pk, "a new folder for the bundle (its config is written to DIR.config.json)")
    pk.add_argument("--golden", metavar="PATH", help="golden windows .npy (none: golden.npy beside the artifact folder)")
    pk.add_argument("--no-firmware", dest="firmware", action="store_false",
                    help="tflm: write no firmware project (the vendor's own firmware flashes model_data.c)")
    pk.add_argument("--sign", metavar="KEY", help="Ed25519 private key (PEM, from `ecg-edge keygen`) to sign the manifest")
    pk.add_argument("--headroom", type=non_negative_float, help="arena headroom over the measured figure (fraction)")
    pk.add_argument("--c-name", help="C identifier of the model array")
    pk.add_argument("--tflm", metavar="DIR", help="vendored TFLite Micro + CMSIS-NN (folder with "
                    "tflite-micro-cmsis-nn.tar.xz, or an unpacked tree; none: $ECG_EDGE_TFLM or "
                    "../shared/vendor/tflite-micro)")
    bind(pk, "package")
    pk.set_defaults(func=cmd_package)

    ve = sub.add_parser("verify", help="check a vendor bundle: checksums, signature, C array, golden outputs")
    ve.add_argument("bundle", help="bundle folder from `ecg-edge package`")
    ve.add_argument("--pubkey", metavar="PATH", help="Ed25519 public key (PEM) the manifest must be signed with; "
                    "without it verify checks integrity only, NOT authenticity")
    ve.add_argument("--require-signature", action="store_true", help="fail unless the bundle is signed and the "
                    "signature checks with --pubkey (default: a keyless verify passes on integrity, with a warning)")
    ve.add_argument("--on", choices=("qemu",), help="also build the bundle's firmware and run it: qemu = the "
                    "Cortex-M55 image on QEMU's mps3-an547 against the same sources built for this host")
    ve.add_argument("--tflm", metavar="DIR", help="vendored TFLite Micro tree for --on (as for package)")
    ve.set_defaults(func=cmd_verify)

    kg = sub.add_parser("keygen", help="an Ed25519 key pair for signing bundles")
    out_flag(kg, "signing_key.pem (0600) and signing_key.pub.pem")
    kg.set_defaults(func=cmd_keygen)


def _run_parsers(sub: argparse._SubParsersAction) -> None:
    be = sub.add_parser("bench", help="run a benchmark from bench/ (JSON on stdout)")
    be.add_argument("name", choices=BENCHMARKS, help="preprocess | runtime | rpeaks (MIT-BIH) | ble | train (teacher throughput) | "
                    "models (student sizes and latency per format vs the teacher) | package (vendor bundle figures per target) | "
                    "firmware (the bundle's firmware on the emulated Cortex-M55: flash, RAM, instructions) | "
                    "pi (the README's Raspberry Pi block on emulated arm64) | faults (BLE loss accounting) | "
                    "soak (hours of accelerated stream: RSS and window latency per simulated hour) | "
                    "hotpaths (tokenizer, synthetic records and bootstrap against plain baselines) | "
                    "short (records shorter than one window) | flips (where int8-vs-fp32 disagreements come from, "
                    "on an `ecg-edge cv` run's folds)")
    be.add_argument("rest", nargs=argparse.REMAINDER, help="options passed to the benchmark (see its --help)")
    be.set_defaults(func=cmd_bench)

    demo = sub.add_parser("demo", help="the main job: data -> teacher -> evaluation -> single-lead student -> int8 "
                          "export -> vendor bundle -> BLE stream -> comparison report, on built-in synthetic data")
    config_flag(demo, "configs/default.toml")
    data_flag(demo)
    out_flag(demo, "every stage's outputs and demo.json", default="runs/demo")
    demo.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="ecg-edge", description="ECG foundation models distilled to the edge. The flags mean the "
                  "same in every command (README, section Command line).")
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}",
                   help="print the version and exit")
    verbosity_flags(p, default=0)
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>")
    for group in (_data_parsers, _stream_parsers, _teacher_parsers, _student_parsers, _bundle_parsers, _run_parsers):
        group(sub)
    for leaf in leaves(p):
        if not any(a.nargs == argparse.REMAINDER for a in leaf._actions):  # bench passes -v/-q on
            verbosity_flags(leaf)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_verbosity(args.verbose - args.quiet)
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
