"""Benchmark teacher training throughput per encoder; prints one JSON object.

    python bench/training.py [--encoders resnet1d_18 resnet1d_34 ...] [--batch 32] [--steps 5]
                          [--objective supervised] [--device auto] [--threads N] [--out FILE]

For each encoder: full training steps (forward, backward, clip, AdamW step) of the chosen
objective on 12-lead 10 s windows at 100 Hz, in ECGs per second (median over `--steps` timed steps
after 2 warm-up steps), and inference (forward only, eval mode, no grad; 2 warm-up passes) in ECGs per second.
`vs_baseline` divides each encoder's training throughput by the first encoder's (the baseline,
measured in the same run). On CUDA the steps run under bf16 autocast, as `ecg-edge pretrain`
does. The windows are seeded Gaussian noise shaped like z-scored ECG windows: the cost of these
networks does not depend on the values.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_runtime.spec import STANDARD_LEADS  # noqa: E402
from report import emit  # noqa: E402  (bench/report.py, beside this script)
from train.models import count_parameters, create_model  # noqa: E402
from train.objectives import build_objective  # noqa: E402

DEFAULT_ENCODERS = ("resnet1d_18", "resnet1d_34", "mstransformer_s", "mstransformer_m", "mstransformer_l")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(name: str, objective: str, batch: int, steps: int, device: torch.device, window: int) -> dict:
    torch.manual_seed(0)
    encoder = create_model(name, leads=STANDARD_LEADS)
    text = create_model("text_transformer") if objective in ("clip", "fgclep") else None
    model = build_objective(objective, encoder, text, n_classes=5, multilabel=True).to(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, len(STANDARD_LEADS), window, generator=gen).to(device)
    data = {"x": x, "target": (torch.rand(batch, 5, generator=gen) > 0.7).float().to(device),
            "text": ["sinus rhythm, normal ECG"] * batch, "report_vec": torch.eye(batch, 16).to(device),
            "meta": torch.tensor([[60.0, 1.0, 25.0]] * batch, device=device),
            "meta_mask": torch.ones(batch, 3, dtype=torch.bool, device=device)}
    bf16 = device.type == "cuda"
    times = []
    model.train()
    for i in range(steps + 2):
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = model(data)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    model.eval()
    infer = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(steps + 2):
            _sync(device)
            t0 = time.perf_counter()
            encoder(x)
            _sync(device)
            if i >= 2:
                infer.append(time.perf_counter() - t0)
    return {"encoder": name, "parameters": count_parameters(encoder),
            "train_ecg_per_s": round(batch / statistics.median(times), 2),
            "train_step_ms_p50": round(1000 * statistics.median(times), 2),
            "infer_ecg_per_s": round(batch / statistics.median(infer), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", nargs="+", default=list(DEFAULT_ENCODERS))
    ap.add_argument("--objective", default="supervised", choices=("clip", "fgclep", "clef", "ssl", "supervised"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--window", type=int, default=1000, help="samples per window (10 s at 100 Hz)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    rows = [measure(n, args.objective, args.batch, args.steps, device, args.window) for n in args.encoders]
    base = rows[0]["train_ecg_per_s"]
    for row in rows:
        row["vs_baseline"] = round(row["train_ecg_per_s"] / base, 3)
    return emit({
        "benchmark": "train", "objective": args.objective, "batch": args.batch, "window": args.window,
        "leads": len(STANDARD_LEADS), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if use_cuda else platform.processor() or platform.machine(),
        "precision": "bf16 autocast" if use_cuda else "fp32", "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "baseline": rows[0]["encoder"], "encoders": rows,
    }, args.out)


if __name__ == "__main__":
    sys.exit(main())
