"""Decode a video into sliding time windows of sampled frames and audio.

The pipeline for one URI:

1. :func:`segtag.sources.local_file` maps the URI to a local file (media roots,
   or a bounded HTTP download).
2. :func:`probe` runs the ffmpeg binary of imageio-ffmpeg in a subprocess on it:
   it reads the container header and decodes the first video frame. Garbage,
   empty and truncated files, unknown codecs and over-limit videos are turned
   into typed errors there, so decord - which can crash or hang on such input -
   only ever sees files that ffmpeg could open.
3. decord's ``VideoReader`` (frames scaled to ``size`` by decord itself) and
   ``AudioReader`` (16 kHz mono) read the file. Frames are decoded one window at
   a time, so memory stays bounded however long the video is.

Times come from the decoded frames' presentation timestamps, never from
``index / fps``, so variable frame rate and 29.97 fps videos get correct times.
See docs/decoding.md for the sampling and windowing rules.
"""

from __future__ import annotations

import logging
import math
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from segtag.errors import VideoLimitError, VideoUnreadableError
from segtag.settings import Settings
from segtag.sources import local_file

log = logging.getLogger(__name__)

AUDIO_RATE = 16_000
# Two timestamps closer than this are the same instant (decord reports float32 seconds).
TIME_EPS = 1e-3
# Codecs that ffmpeg knows but the FFmpeg 4.1 build inside the decord wheel cannot decode.
UNSUPPORTED_CODECS = frozenset({"av1", "vvc", "apv", "avs2", "avs3", "evc", "lcevc"})


@dataclass(frozen=True)
class DecodeLimits:
    """What a video may be: where it may come from and how big it may get."""

    media_roots: tuple[str, ...] = ()
    max_bytes: int = 2 * 1024**3
    max_duration_s: float = 4 * 3600.0
    max_width: int = 3840
    max_height: int = 3840
    http_timeout_s: float = 30.0
    probe_timeout_s: float = 60.0
    # decord's AudioReader decodes a whole track into memory (and keeps several copies:
    # about 1 GB of RSS for one hour). Longer tracks are streamed through ffmpeg instead.
    max_decord_audio_s: float = 600.0

    @classmethod
    def from_settings(cls, s: Settings) -> DecodeLimits:
        """The decoding limits of a Settings object."""
        return cls(
            media_roots=tuple(s.media_roots),
            max_bytes=s.max_bytes,
            max_duration_s=s.max_duration_s,
            max_width=s.max_width,
            max_height=s.max_height,
            http_timeout_s=s.http_timeout_s,
        )


@dataclass(frozen=True)
class VideoInfo:
    """What the decoder knows about a video before reading any window."""

    path: str
    duration_s: float
    width: int
    height: int
    fps: float
    num_frames: int
    has_audio: bool


@dataclass
class Window:
    """One time window: its sampled frames and the audio under it."""

    index: int  # 0, 1, 2, ... in time order
    start: float  # seconds: timestamp of the first sampled frame
    end: float  # seconds: timestamp of the next sampled frame after the window, or the video end
    frames: np.ndarray  # (T, size, size, 3) uint8 RGB, T >= 1
    timestamps: np.ndarray  # (T,) float64 seconds of each sampled frame
    audio: np.ndarray  # (S,) float32 mono 16 kHz covering [start, end); zeros if no track
    has_audio: bool
    first_frame: int = 0  # position of frames[0] on the video's sampled-frame timeline


@dataclass(frozen=True)
class ProbeResult:
    """What ffmpeg says about a file."""

    codec: str
    width: int
    height: int
    duration_s: float | None
    fps: float | None
    has_audio: bool


# --- probing -----------------------------------------------------------------

_DURATION = re.compile(r"Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\d+:\d+\S*: Video: (?P<codec>[\w-]+)(?P<rest>.*)")
_SIZE = re.compile(r"[ ,](\d+)x(\d+)(?=[ ,\[]|$)")
_FPS = re.compile(r"([\d.]+)(k?) (?:fps|tbr)")
_AUDIO = re.compile(r"Stream #\d+:\d+\S*: Audio: ")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped with imageio-ffmpeg."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _first_video_stream(text: str) -> re.Match[str] | None:
    for match in _VIDEO.finditer(text):
        if "attached pic" not in match.group("rest"):  # skip cover art
            return match
    return None


def parse_probe(text: str) -> ProbeResult | None:
    """Parse the stream header ffmpeg prints for ``-i FILE``; None if there is no video stream."""
    video = _first_video_stream(text)
    if video is None:
        return None
    rest = video.group("rest")
    size = _SIZE.search(rest)
    width, height = (int(size.group(1)), int(size.group(2))) if size else (0, 0)
    fps_match = _FPS.search(rest)
    fps = None
    if fps_match:
        fps = float(fps_match.group(1)) * (1000.0 if fps_match.group(2) else 1.0)
    # Side data (display matrix) is printed under its stream, before the next "Stream #".
    after = text[video.end() :]
    next_stream = after.find("Stream #")
    rot = _ROTATION.search(after if next_stream < 0 else after[:next_stream])
    if rot and round(float(rot.group(1))) % 180 == 90:
        width, height = height, width  # decord applies the rotation: frames come out upright
    dur = _DURATION.search(text)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else None
    return ProbeResult(
        codec=video.group("codec"),
        width=width,
        height=height,
        duration_s=duration,
        fps=fps,
        has_audio=_AUDIO.search(text) is not None,
    )


def _error_lines(text: str, limit: int = 3) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    bad = [ln for ln in lines if any(w in ln.lower() for w in ("error", "invalid", "not found", "partial", "fail"))]
    return "; ".join((bad or lines)[-limit:])[:500]


def probe(path: Path, limits: DecodeLimits) -> ProbeResult:
    """Check a local file with ffmpeg in a subprocess before decord touches it.

    Raises VideoUnreadableError (empty, not a video, truncated header, no video
    stream, unsupported codec, first frame undecodable) or VideoLimitError
    (resolution or duration over ``limits``).
    """
    size = path.stat().st_size
    if size == 0:
        raise VideoUnreadableError(f"{path.name}: the file is empty (0 bytes)")
    if size > limits.max_bytes:
        raise VideoLimitError(f"{path.name}: {size} bytes is over the limit of {limits.max_bytes}")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    cmd += ["-map", "0:v:0", "-frames:v", "1", "-f", "null", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=limits.probe_timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise VideoUnreadableError(f"{path.name}: probing took longer than {limits.probe_timeout_s:g} s") from exc
    text = proc.stderr.decode("utf-8", "replace")
    info = parse_probe(text)
    if info is None:
        raise VideoUnreadableError(f"{path.name}: not a readable video (no video stream): {_error_lines(text)}")
    if info.codec in UNSUPPORTED_CODECS:
        raise VideoUnreadableError(f"{path.name}: video codec {info.codec!r} is not supported by the decoder")
    if info.width <= 0 or info.height <= 0:
        raise VideoUnreadableError(f"{path.name}: video stream has no frame size: {_error_lines(text)}")
    if info.width > limits.max_width or info.height > limits.max_height:
        raise VideoLimitError(
            f"{path.name}: resolution {info.width}x{info.height} is over the limit of "
            f"{limits.max_width}x{limits.max_height}"
        )
    if info.duration_s is not None and info.duration_s > limits.max_duration_s:
        raise VideoLimitError(
            f"{path.name}: duration {info.duration_s:.1f} s is over the limit of {limits.max_duration_s:g} s"
        )
    if proc.returncode != 0:
        raise VideoUnreadableError(f"{path.name}: the first frame cannot be decoded: {_error_lines(text)}")
    return info


# --- sampling and windows --------------------------------------------------------


def sample_frames(pts: np.ndarray, end_t: float, sample_fps: float) -> np.ndarray:
    """Indices of the frames sampled at ``sample_fps`` from frame timestamps ``pts``.

    Grid time ``g_k = pts[0] + k / sample_fps`` (``g_k < end_t``) takes the first
    frame shown at or after it. Duplicates (a source slower than ``sample_fps``)
    are dropped, so the returned indices are strictly increasing.
    """
    if sample_fps <= 0:
        raise ValueError(f"sample_fps must be > 0, got {sample_fps}")
    if len(pts) == 0:
        return np.zeros(0, dtype=np.int64)
    count = max(math.ceil((end_t - pts[0]) * sample_fps), 1)
    grid = pts[0] + np.arange(count, dtype=np.float64) / sample_fps  # (K,)
    idx = np.searchsorted(pts, grid - TIME_EPS, side="left")  # (K,)
    return np.unique(idx[idx < len(pts)]).astype(np.int64)


def plan_windows(
    times: np.ndarray, end_t: float, window_s: float, stride_s: float
) -> list[tuple[int, int, float, float]]:
    """Windows over the sampled-frame timeline ``times``: ``(first, stop, start_s, end_s)``.

    Window i covers ``[times[0] + i * stride_s, ... + window_s)`` and holds the
    sampled frames ``first:stop`` whose timestamps fall in it. Windows without a
    frame (a gap in a variable-frame-rate video) are skipped; the last window is
    the first one that reaches the end of the video, partial or not.
    """
    if window_s <= 0 or stride_s <= 0:
        raise ValueError(f"window_s and stride_s must be > 0, got {window_s} and {stride_s}")
    plans: list[tuple[int, int, float, float]] = []
    if len(times) == 0:
        return plans
    t0 = float(times[0])
    i = 0
    while True:
        nominal_start = t0 + i * stride_s
        nominal_end = nominal_start + window_s
        if nominal_start >= end_t - TIME_EPS:
            break
        first = int(np.searchsorted(times, nominal_start - TIME_EPS, side="left"))
        stop = int(np.searchsorted(times, nominal_end - TIME_EPS, side="left"))
        if stop > first:
            end = float(times[stop]) if stop < len(times) else end_t
            plans.append((first, stop, float(times[first]), end))
        if nominal_end >= end_t - TIME_EPS:
            break
        i += 1
    return plans


class Video:
    """An opened, probed video. Use :func:`open_video` rather than building one."""

    def __init__(self, path: Path, probe_result: ProbeResult, limits: DecodeLimits | None = None) -> None:
        import decord

        self._decord = decord
        self.path = path
        self._probe = probe_result
        self._limits = limits or DecodeLimits()
        self._readers: dict[tuple[int, int], Any] = {}
        reader = self._reader(224)
        n = len(reader)
        if n == 0:
            raise VideoUnreadableError(f"{path.name}: the video stream has no frames")
        ts = self._call(reader.get_frame_timestamp, list(range(n)))  # (N, 2) float32 [start, end)
        # decord reports float32; rounding to microseconds removes the float32 noise.
        self._pts = np.round(np.asarray(ts[:, 0], dtype=np.float64), 6)  # (N,)
        if np.any(np.diff(self._pts) < 0):
            raise VideoUnreadableError(f"{path.name}: frame timestamps are not in presentation order")
        self._end_t = float(np.round(max(float(ts[-1, 1]), self._pts[-1]), 6))
        self._audio: _DecordAudio | None = None
        self._audio_failed = False
        self.info = VideoInfo(
            path=str(path),
            duration_s=self._end_t,
            width=probe_result.width,
            height=probe_result.height,
            fps=float(reader.get_avg_fps()),
            num_frames=n,
            has_audio=probe_result.has_audio,
        )

    # decord raises its own DECORDError / RuntimeError; callers only see VideoError.
    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (self._decord.DECORDError, RuntimeError, IndexError) as exc:
            msg = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
            raise VideoUnreadableError(f"{self.path.name}: decoding failed: {msg}") from exc

    def _reader(self, size: int | None) -> Any:
        key = (size, size) if size else (-1, -1)
        if key not in self._readers:
            self._readers[key] = self._call(
                self._decord.VideoReader, str(self.path), ctx=self._decord.cpu(0), width=key[0], height=key[1]
            )
        return self._readers[key]

    def _audio_source(self) -> _DecordAudio | _StreamedAudio | None:
        """A reader of the audio track by time, or None without a (readable) track."""
        if not self._probe.has_audio or self._audio_failed:
            return None
        if self._end_t > self._limits.max_decord_audio_s:
            return _StreamedAudio(self.path)  # one per pass over the windows: it only reads forward
        if self._audio is None:
            try:
                reader = self._decord.AudioReader(
                    str(self.path), ctx=self._decord.cpu(0), sample_rate=AUDIO_RATE, mono=True
                )
                self._audio = _DecordAudio(reader)
            except (self._decord.DECORDError, RuntimeError) as exc:
                # A broken or exotic audio track should not cost the whole video.
                log.warning("%s: audio track unreadable, treating as silent: %s", self.path.name, exc)
                self._audio_failed = True
                self.info = replace(self.info, has_audio=False)
        return self._audio

    def timeline(self, sample_fps: float = 1.0) -> np.ndarray:
        """(T,) float64 timestamps of the sampled frames at ``sample_fps``."""
        return self._pts[sample_frames(self._pts, self._end_t, sample_fps)]

    def windows(
        self, window_s: float = 5.0, stride_s: float | None = None, sample_fps: float = 1.0, size: int | None = 224
    ) -> Iterator[Window]:
        """Yield the windows of the video in time order (see :func:`plan_windows`).

        Frames are decoded window by window; with overlapping windows the frames
        shared with the previous window are reused, not decoded twice.
        """
        stride = window_s if stride_s is None or stride_s <= 0 else stride_s
        frame_idx = sample_frames(self._pts, self._end_t, sample_fps)  # (T,) into the native frames
        times = self._pts[frame_idx]  # (T,)
        plans = plan_windows(times, self._end_t, window_s, stride)
        reader = self._reader(size)
        audio = self._audio_source()
        try:
            yield from self._iter_windows(reader, audio, frame_idx, times, plans)
        finally:
            if isinstance(audio, _StreamedAudio):
                audio.close()

    def _iter_windows(
        self,
        reader: Any,
        audio: _DecordAudio | _StreamedAudio | None,
        frame_idx: np.ndarray,
        times: np.ndarray,
        plans: list[tuple[int, int, float, float]],
    ) -> Iterator[Window]:
        cache: dict[int, np.ndarray] = {}
        for index, (first, stop, start, end) in enumerate(plans):
            wanted = list(range(first, stop))
            missing = [k for k in wanted if k not in cache]
            if missing:
                batch = self._call(reader.get_batch, [int(frame_idx[k]) for k in missing]).asnumpy()  # (M, H, W, 3)
                cache.update(zip(missing, batch, strict=True))
            frames = np.stack([cache[k] for k in wanted])  # (T, H, W, 3)
            cache = {k: cache[k] for k in wanted}  # keep only what the next window may share
            samples = audio.slice(start, end) if audio is not None else _silence(start, end)
            yield Window(
                index=index,
                start=start,
                end=end,
                frames=frames,
                timestamps=times[first:stop].copy(),
                audio=samples,
                has_audio=audio is not None and audio.ok,
                first_frame=first,
            )

    def close(self) -> None:
        """Release the decoders."""
        self._readers.clear()
        self._audio = None


class _DecordAudio:
    """Slices of a decord AudioReader by time.

    decord decodes the whole track when the reader is built (16 kHz mono float32
    is 230 MB per hour); slices are read through ``get_batch`` one window at a
    time, never as a single list of every sample index.
    """

    def __init__(self, reader: Any) -> None:
        # Pad so that sample 0 is time 0, like the video timestamps. decord does not
        # update its sample count after padding, so the count read here is what
        # get_batch accepts (it may drop the last few ms of a padded track).
        reader.add_padding()
        self._reader = reader
        self._n = int(reader.shape[1])
        self.ok = True

    def slice(self, start: float, end: float) -> np.ndarray:
        """(S,) float32 samples covering [start, end) seconds, zero-padded outside the track."""
        a, b = round(start * AUDIO_RATE), round(end * AUDIO_RATE)
        out = np.zeros(max(b - a, 0), dtype=np.float32)  # (S,)
        lo, hi = max(a, 0), min(b, self._n)
        if hi > lo:
            out[lo - a : hi - a] = self._reader.get_batch(range(lo, hi)).asnumpy()[0]  # (1, S') -> (S',)
        return out


class _StreamedAudio:
    """16 kHz mono audio read forward from an ffmpeg subprocess, for long tracks.

    Memory is bounded by one window: samples before the start of the last slice
    asked for are dropped, so slices must come in non-decreasing start order
    (windows do, overlapping or not).
    """

    def __init__(self, path: Path) -> None:
        cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-vn", "-ac", "1"]
        # first_pts=0 pads a track that starts late with silence, so sample 0 is time 0.
        cmd += ["-af", f"aresample={AUDIO_RATE}:first_pts=0", "-f", "f32le", "-"]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._buf = np.zeros(0, dtype=np.float32)  # samples from self._buf_start on
        self._buf_start = 0
        self._eof = False
        self._total = 0

    @property
    def ok(self) -> bool:
        """False once ffmpeg has ended without giving a single sample (an undecodable track)."""
        return not (self._eof and self._total == 0)

    def _read(self, samples: int) -> None:
        assert self._proc.stdout is not None
        data = self._proc.stdout.read(samples * 4)
        if len(data) < samples * 4:
            self._eof = True
        chunk = np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4")
        self._total += len(chunk)
        self._buf = np.concatenate([self._buf, chunk])

    def slice(self, start: float, end: float) -> np.ndarray:
        """(S,) float32 samples covering [start, end) seconds, zero-padded outside the track."""
        a, b = round(start * AUDIO_RATE), round(end * AUDIO_RATE)
        if a < self._buf_start:
            raise ValueError(f"streamed audio only reads forward: {start} s is before what was dropped")
        drop = min(a - self._buf_start, len(self._buf))
        self._buf, self._buf_start = self._buf[drop:], self._buf_start + drop
        while not self._eof and self._buf_start + len(self._buf) < b:
            self._read(b - self._buf_start - len(self._buf))
        out = np.zeros(max(b - a, 0), dtype=np.float32)  # (S,)
        have = self._buf[a - self._buf_start : b - self._buf_start]
        out[: len(have)] = have
        return out

    def close(self) -> None:
        """Stop ffmpeg (it may still be running when iteration stops early)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def _silence(start: float, end: float) -> np.ndarray:
    return np.zeros(max(round(end * AUDIO_RATE) - round(start * AUDIO_RATE), 0), dtype=np.float32)


@contextmanager
def open_video(uri: str, limits: DecodeLimits | None = None) -> Iterator[Video]:
    """Open a video URI (file://, absolute path or http(s)://) after probing it.

    Raises UnsupportedSourceError, VideoUnreadableError, VideoLimitError or
    TransientSourceError; never lets a decord exception escape.
    """
    limits = limits or DecodeLimits()
    with ExitStack() as stack:
        path = stack.enter_context(local_file(uri, limits.media_roots, limits.max_bytes, limits.http_timeout_s))
        result = probe(path, limits)
        video = Video(path, result, limits)
        if video.info.duration_s > limits.max_duration_s:
            raise VideoLimitError(
                f"{path.name}: duration {video.info.duration_s:.1f} s is over the limit of {limits.max_duration_s:g} s"
            )
        try:
            yield video
        finally:
            video.close()
