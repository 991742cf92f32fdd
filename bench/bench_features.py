"""Visual backbone throughput: EfficientNet-Lite0 frames/s at batch sizes 1, 4, 16, 64.

Runs on the CPU, and on the GPU too when CUDA is available (bf16 autocast, the
card name is printed). The reference for the ratio column is batch size 1 on
the same device. "frames per CPU-s" (frames / process CPU seconds) is less
sensitive than wall time to other jobs on a shared machine.

    .venv/bin/python bench/bench_features.py [--frames 128] [--repeat 2]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import machine, table

from segtag.features.visual import VisualEncoder

BATCH_SIZES = (1, 4, 16, 64)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bench_device(device: str, frames: np.ndarray, repeat: int) -> list[list[object]]:
    enc = VisualEncoder(device=device, batch_size=1)
    enc.encode(frames[:4])  # load the weights and warm up
    rows: list[list[object]] = []
    base = 0.0
    for bs in BATCH_SIZES:
        enc.batch_size = bs
        best, cpu = float("inf"), 0.0
        for _ in range(repeat):
            if device != "cpu":
                torch.cuda.synchronize()
            c0, t0 = _cpu(), time.perf_counter()
            enc.encode(frames)
            if device != "cpu":
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            if wall < best:
                best, cpu = wall, _cpu() - c0
        fps = len(frames) / best
        base = base or fps
        rows.append([device, bs, len(frames), best, cpu, fps, len(frames) / cpu, fps / base])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    frames = np.random.default_rng(0).integers(0, 256, size=(args.frames, 224, 224, 3), dtype=np.uint8)
    rows = bench_device("cpu", frames, args.repeat)
    if torch.cuda.is_available():
        rows += bench_device("cuda", frames, args.repeat)
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    print(
        table(
            ["device", "batch size", "frames", "wall s", "CPU s", "frames/s", "frames per CPU-s", "ratio to batch 1"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
