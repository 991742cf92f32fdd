"""Model throughput on the CPU: windows per second and ms per window, and FLOPs per window.

Usage: .venv/bin/python bench/bench_model.py [--presets demo segtag] [--batches 1 16 128] [--seconds 3]

Each window is 5 frames (5 s at 1 fps) of 1280-d rgb, 128-d audio and a 384-d
title, as the tagger feeds them; the model is in eval mode under
``torch.inference_mode``. FLOPs are counted by ``torch.utils.flop_counter``
(matrix multiplies only, 2 FLOPs per multiply-add).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from segtag.model import SegTagger, preset
from segtag.training import available_cores


def window_batch(model: SegTagger, batch: int, frames: int) -> dict[str, torch.Tensor]:
    """Random inputs shaped like ``batch`` windows of ``frames`` frames."""
    cfg = model.config
    return {
        "rgb": torch.randn(batch, frames, cfg.rgb_dim),
        "rgb_mask": torch.ones(batch, frames, dtype=torch.bool),
        "audio": torch.randn(batch, frames, cfg.audio_dim),
        "audio_mask": torch.ones(batch, frames, dtype=torch.bool),
        "text": torch.randn(batch, cfg.text_dim),
        "text_mask": torch.ones(batch, dtype=torch.bool),
    }


def flops_per_window(model: SegTagger, frames: int) -> int:
    """FLOPs of one window's forward pass."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(**window_batch(model, 1, frames))
    return int(counter.get_total_flops())


def time_batch(model: SegTagger, batch: int, frames: int, seconds: float) -> tuple[float, float]:
    """(windows per second, ms per window) over at least ``seconds`` of repeated forwards."""
    x = window_batch(model, batch, frames)
    with torch.inference_mode():
        for _ in range(3):  # warm-up: allocator and kernel selection
            model(**x)
        n, start = 0, time.perf_counter()
        while True:
            model(**x)
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and n >= 5:
                break
    per_window = elapsed / (n * batch)
    return 1.0 / per_window, per_window * 1000.0


def cpu_name() -> str:
    """The lscpu model name (falls back to platform.processor())."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    """Print the benchmark table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["demo", "segtag"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16, 128])
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=available_cores(), help="default: cores not busy")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = sys.stdout
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    out.write(f"cpu: {cpu_name()}, {args.threads} threads, torch {torch.__version__}, load average {load}\n")
    out.write(f"windows of {args.frames} frames, {args.classes} classes\n\n")
    out.write("| preset | parameters | fp32 MB | MFLOPs/window | batch | windows/s | ms/window |\n")
    out.write("|---|---|---|---|---|---|---|\n")
    for name in args.presets:
        model = SegTagger(preset(name, args.classes)).eval()
        params = model.num_parameters()
        mflops = flops_per_window(model, args.frames) / 1e6
        for batch in args.batches:
            wps, ms = time_batch(model, batch, args.frames, args.seconds)
            out.write(
                f"| {name} | {params / 1e6:.2f}M | {params * 4 / 1e6:.1f} | {mflops:.1f} | {batch} "
                f"| {wps:.1f} | {ms:.2f} |\n"
            )
            out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
