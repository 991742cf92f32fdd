"""Sampled-frame decoding speed: segtag windows vs PyAV vs the ffmpeg decode floor.

On the same 60 s H.264 files (testsrc2, 30 fps, x264 preset veryfast, keyframe
every 250 frames, no audio) at 360p, 720p and 1080p, three ways to get the
frames sampled at 1 fps:

* segtag: ``open_video(...).windows(5 s, 1 fps, size=224)`` - probe, decord,
  224x224 RGB arrays;
* PyAV: decode every frame (threaded), convert the sampled ones to 224x224 RGB;
* floor: ``ffmpeg -i FILE -vf fps=1 -f null -`` - decode only, nothing returned.

Reported: sampled frames per second (wall clock, best of ``--repeat``), CPU
seconds (process and children), and the ratios to the floor (1.0 = as fast as
ffmpeg alone): by wall clock, and by CPU time (floor CPU s / method CPU s),
which other jobs on a shared machine disturb less.

    .venv/bin/python bench/bench_decode.py [--seconds 60] [--repeat 2]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import machine, table

from segtag.decode import DecodeLimits, open_video
from segtag.testing.media import ffmpeg_exe, make_video

SIZES = {"360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080)}


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn: Callable[[], int], repeat: int) -> tuple[int, float, float]:
    """(frames, best wall seconds, CPU seconds of that run)."""
    best = (0, float("inf"), 0.0)
    for _ in range(repeat):
        c0, t0 = _cpu(), time.perf_counter()
        n = fn()
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
        if wall < best[1]:
            best = (n, wall, cpu)
    return best


def run_segtag(path: Path) -> int:
    limits = DecodeLimits(media_roots=(str(path.parent),))
    with open_video(str(path), limits) as video:
        return sum(len(w.frames) for w in video.windows(window_s=5.0, sample_fps=1.0, size=224))


def run_pyav(path: Path, wanted: set[float]) -> int:
    import av

    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if frame.time is not None and round(frame.time, 3) in wanted:
                rgb = frame.reformat(width=224, height=224, format="rgb24").to_ndarray()  # (224, 224, 3)
                n += int(rgb.shape[0] == 224)
    return n


def run_floor(path: Path) -> int:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path)]
    subprocess.run([*cmd, "-vf", "fps=1", "-f", "null", "-"], check=True)
    return -1  # frame count taken from the segtag run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the test videos here")
    args = parser.parse_args()
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(prefix="segtag-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        for name, (w, h) in SIZES.items():
            path = workdir / f"bench_{name}_{args.seconds:g}s.mp4"
            if not path.exists():
                extra = ["-preset", "veryfast", "-g", "250"]
                make_video(path, seconds=args.seconds, fps=30, width=w, height=h, audio=False, extra_args=extra)
            with open_video(str(path), DecodeLimits(media_roots=(str(workdir),))) as video:
                wanted = {round(float(t), 3) for t in video.timeline(1.0)}
            n_seg, t_seg, c_seg = measure(partial(run_segtag, path), args.repeat)
            n_av, t_av, c_av = measure(partial(run_pyav, path, wanted), args.repeat)
            _, t_floor, c_floor = measure(partial(run_floor, path), args.repeat)
            assert n_seg == n_av == len(wanted), (n_seg, n_av, len(wanted))
            floor_fps = n_seg / t_floor
            for method, n, t, c in (
                ("segtag (decord)", n_seg, t_seg, c_seg),
                ("PyAV", n_av, t_av, c_av),
                ("ffmpeg -vf fps=1 (floor)", n_seg, t_floor, c_floor),
            ):
                rows.append([name, method, n, t, c, n / t, (n / t) / floor_fps, c_floor / c])
    print(f"machine: {machine()}")
    print(f"videos: {args.seconds:g} s, 30 fps, H.264 (x264 veryfast, GOP 250), no audio; best of {args.repeat}")
    print(
        table(
            ["video", "method", "frames", "wall s", "CPU s", "frames/s", "ratio to floor", "CPU ratio to floor"],
            rows,
        )
    )
    for col, what in ((-2, "wall-clock"), (-1, "CPU")):
        ratios = [float(r[col]) for r in rows if str(r[1]).startswith("segtag")]
        print(f"segtag / floor {what} ratio, geometric mean over sizes: {np.exp(np.mean(np.log(ratios))):.2f}")


if __name__ == "__main__":
    main()
