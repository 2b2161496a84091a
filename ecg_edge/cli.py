"""The one CLI: `ecg-edge <subcommand>`, subcommands in pipeline order.

`main(argv) -> int` so tests call it directly. Each handler imports its heavy modules inside the
handler; a missing optional dependency prints one line naming the extra to install. Every
`EcgEdgeError` is printed as one line (`ecg-edge: error: ...`) with exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from edge_runtime.errors import EcgEdgeError, MissingExtraError

DATASETS = ("ptbxl", "cinc2017", "mitdb")


def require(module: str, extra: str, command: str) -> Any:
    """Import `module` or raise MissingExtraError naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"`ecg-edge {command}` needs the '{extra}' extra: pip install 'ecg-edge[{extra}]' ({exc.name or module} is not installed)"
        ) from None


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

def cmd_stream(args: argparse.Namespace) -> int:
    from ecg_edge.stream import run

    return run(args)


def cmd_wearable(args: argparse.Namespace) -> int:
    from ecg_edge.stream import run

    args.source = f"virtual:{args.replay}"
    return run(args)


def cmd_ble_scan(args: argparse.Namespace) -> int:
    require("bleak", "edge", "ble scan")
    import asyncio

    from ecg_edge.stream import scan_command

    return asyncio.run(scan_command(args.timeout))


# --- bench ------------------------------------------------------------------------------------

BENCHMARKS = ("preprocess", "runtime", "rpeaks", "ble")
BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def cmd_bench(args: argparse.Namespace) -> int:
    """Run bench/<name>.py in a fresh interpreter (benchmarks pin threads and cores themselves)."""
    import subprocess

    from edge_runtime.errors import ConfigError

    script = BENCH_DIR / ("rpeaks_mitbih.py" if args.name == "rpeaks" else f"{args.name}.py")
    if not script.is_file():
        raise ConfigError(f"{script}: not found; the benchmarks ship with the source checkout (git clone), "
                          "not with the installed package")
    return subprocess.call([sys.executable, str(script), *args.rest])


# --- demo -------------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    require("neurokit2", "train", "demo")
    from ecg_edge.demo import run_demo

    return run_demo(config=args.config, out=Path(args.out), progress=_progress("demo"))


# --- parser -----------------------------------------------------------------------------------

def _stream_options(st: argparse.ArgumentParser) -> None:
    st.add_argument("--model", help="artifact (manifest.json, its folder or the model file); without it: beats, HR and quality only")
    st.add_argument("--backend", choices=("litert", "executorch", "onnxruntime"), help="override the artifact's runtime")
    st.add_argument("--threads", type=int, default=1)
    st.add_argument("--lead", help="lead to stream, by name (default: the record's first lead; I for synthetic)")
    st.add_argument("--fs", type=float, help="sampling rate of a .npy replay; rate of the synthetic source (default 250)")
    st.add_argument("--seconds", type=float, default=0.0, help="stop after this much signal; synthetic length (default 60)")
    st.add_argument("--speed", type=float, default=1.0, help="replay speed, 1.0 = real time")
    st.add_argument("--fast", action="store_true", help="replay as fast as possible")
    st.add_argument("--chunk", type=int, default=73, help="samples per chunk for replay (73 = one Polar H10 notification)")
    st.add_argument("--seed", type=int, default=0, help="seed of the synthetic source and of injected faults")
    st.add_argument("--profile", choices=("polar", "open"), default="polar", help="BLE profile")
    st.add_argument("--bridge-max-s", type=float, default=1.0, help="longest gap bridged by interpolation (s)")
    st.add_argument("--jsonl", help="write windows and events as JSON lines here")
    st.add_argument("--csv", help="write one row per window here")
    st.add_argument("--no-live", action="store_true", help="no live terminal view")
    st.add_argument("--no-beats", action="store_true", help="skip R-peak detection and heart rate")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ecg-edge", description="ECG foundation models distilled to the edge.")
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>")

    data = sub.add_parser("data", help="download datasets, build preprocessed shards").add_subparsers(
        dest="data_command", required=True, metavar="<data command>")
    d = data.add_parser("download", help="download a PhysioNet dataset (resumable, SHA-256 verified)")
    d.add_argument("dataset", choices=DATASETS)
    d.add_argument("dest", help="destination folder")
    d.add_argument("--base-url", help="mirror or local server to download from (default: physionet.org)")
    d.add_argument("--include", nargs="+", help="glob patterns of files to fetch (default: the dataset's usual set)")
    d.add_argument("--with-optional", nargs="+", metavar="GROUP", help="optional groups, e.g. records500 for PTB-XL")
    d.add_argument("--workers", type=int, default=4)
    d.set_defaults(func=cmd_data_download)

    b = data.add_parser("build", help="preprocess a dataset once into memory-mapped shards")
    b.add_argument("--config", help="pipeline TOML (default: built-in synthetic defaults; see configs/)")
    b.add_argument("--source", help="override data.source: synthetic | ptbxl:PATH | cinc2017:PATH | mitdb:PATH")
    b.add_argument("--n-records", type=int, help="override data.n_records (synthetic)")
    b.add_argument("--out", required=True, help="output folder (must not hold shards already)")
    b.add_argument("--workers", type=int, default=1, help="preprocessing processes")
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
    we.add_argument("--replay", required=True, help="WFDB record or .npy (mV; give --fs) to replay")
    we.add_argument("--drop", type=float, default=0.0, help="fraction of notifications the wearable drops")
    we.add_argument("--disconnect-after", type=int, nargs="+", metavar="N", help="force disconnects after N notifications")
    we.add_argument("--device-fs", type=float, default=250.0, help="sample rate of the open profile (Polar is 130 Hz)")
    _stream_options(we)
    we.set_defaults(func=cmd_wearable)

    ble = sub.add_parser("ble", help="Bluetooth LE wearables").add_subparsers(dest="ble_command", required=True,
                                                                             metavar="<ble command>")
    sc = ble.add_parser("scan", help="list nearby BLE devices and the ECG profile each speaks")
    sc.add_argument("--timeout", type=float, default=5.0)
    sc.set_defaults(func=cmd_ble_scan)

    be = sub.add_parser("bench", help="run a benchmark from bench/ (JSON on stdout)")
    be.add_argument("name", choices=BENCHMARKS, help="preprocess | runtime | rpeaks (MIT-BIH) | ble")
    be.add_argument("rest", nargs=argparse.REMAINDER, help="options passed to the benchmark (see its --help)")
    be.set_defaults(func=cmd_bench)

    demo = sub.add_parser("demo", help="the main job: run the pipeline that exists on built-in synthetic data")
    demo.add_argument("--config", help="pipeline TOML (default: built-in defaults)")
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
