"""Peak RSS of decoding a 1-hour 720p video window by window.

The hour is real-frame-rate 720p H.264 (testsrc2, 25 fps, ~500 kb/s) with an AAC
sine track. Encoding 90 000 frames takes long on a small machine, so one minute
is encoded and the hour is made from 60 copies with ffmpeg's concat demuxer
(stream copy: timestamps run on, every frame is really decoded). The decode runs
in a fresh child process, so its peak RSS (VmHWM) is the decoder's alone.

    .venv/bin/python bench/bench_decode_memory.py [--minutes 60] [--extract]

``--extract`` runs the whole FeatureExtractor (EfficientNet on every sampled
frame) instead of decoding + audio features only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import machine, table

from segtag.testing.media import make_video, run_ffmpeg

CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # MiB
    return float("nan")

from segtag.decode import DecodeLimits, open_video
from segtag.features.audio import AudioFeaturizer
path, mode = sys.argv[1], sys.argv[2]
limits = DecodeLimits(media_roots=(str(Path(path).parent),))
t0 = time.perf_counter()
trace = []
if mode == "extract":
    from segtag.features.extractor import FeatureExtractor
    feats = FeatureExtractor(limits=limits, device="auto").extract(path, "a long test video")
    frames, windows = feats.num_frames, len(feats.windows)
else:
    featurize = AudioFeaturizer()
    frames = windows = 0
    with open_video(path, limits) as video:
        for w in video.windows(window_s=5.0, sample_fps=1.0):
            featurize(w.audio, w.timestamps, w.start, 1.0)
            frames += len(w.timestamps)
            windows += 1
            if windows % 60 == 0:
                trace.append((round(w.end), round(status("VmRSS"))))
print(json.dumps({"frames": frames, "windows": windows, "seconds": time.perf_counter() - t0,
                  "peak_rss_mib": status("VmHWM"), "trace": trace}))
"""


def make_long_video(workdir: Path, minutes: int) -> Path:
    """A real-fps 720p video of ``minutes`` minutes (one encoded minute, concatenated)."""
    out = workdir / f"long_{minutes}min_720p.mp4"
    if out.exists():
        return out
    minute = make_video(
        workdir / "minute.mp4",
        seconds=60,
        fps=25,
        width=1280,
        height=720,
        audio=True,
        extra_args=["-b:v", "500k", "-g", "250", "-b:a", "32k"],
    )
    listing = workdir / "list.txt"
    listing.write_text("".join(f"file '{minute}'\n" for _ in range(minutes)))
    run_ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(out)], timeout_s=1200)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the video here (default: a temp dir)")
    parser.add_argument("--extract", action="store_true", help="run the full FeatureExtractor")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="segtag-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        video = make_long_video(workdir, args.minutes)
        make_s = time.perf_counter() - t0
        mode = "extract" if args.extract else "decode"
        proc = subprocess.run([sys.executable, "-c", CHILD, str(video), mode], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"machine: {machine()}")
        size_mb = video.stat().st_size / 1e6
        print(f"video: {args.minutes} min 1280x720 25 fps H.264 + AAC, {size_mb:.0f} MB, made in {make_s:.0f} s")
        what = "FeatureExtractor.extract" if args.extract else "open_video().windows(5 s, 1 fps) + audio features"
        print(
            table(
                ["run", "windows", "sampled frames", "seconds", "sampled frames/s", "peak RSS (MiB)", "limit (MiB)"],
                [[what, r["windows"], r["frames"], r["seconds"], r["frames"] / r["seconds"], r["peak_rss_mib"], 2048]],
            )
        )
        print(f"peak RSS / 2 GiB limit: {r['peak_rss_mib'] / 2048:.2f}")
        if r["trace"]:
            print("RSS over the video (video minute -> MiB): " + ", ".join(f"{t // 60}:{m}" for t, m in r["trace"]))


if __name__ == "__main__":
    main()
