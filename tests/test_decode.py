"""Window decoding: times against ffmpeg's frame timestamps, sampling rules, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segtag.decode import DecodeLimits, open_video, parse_probe, plan_windows, sample_frames
from segtag.errors import UnsupportedSourceError, VideoLimitError, VideoUnreadableError
from segtag.settings import Settings
from segtag.testing.media import (
    SAMPLE_CLIPS,
    first_frame_rgb,
    frame_times,
    make_empty,
    make_rotated,
    make_text_file,
    make_truncated,
    make_video,
    sample_clip,
)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Short synthetic videos, good and bad, made once for this module."""
    d = tmp_path_factory.mktemp("media")
    v = {
        "tone": make_video(d / "tone.mp4", seconds=3, fps=25, audio=True),
        "ntsc": make_video(d / "ntsc.mp4", seconds=7, fps=29.97, audio=False),
        "vfr": make_video(d / "vfr.mp4", seconds=6, fps=30, audio=False, vfr=True),
        "vertical": make_video(d / "vertical.mp4", seconds=2, fps=25, width=180, height=320, audio=False),
        "av1": make_video(d / "av1.mp4", seconds=1, fps=10, width=64, height=64, audio=False, codec="libaom-av1"),
        "mpeg4": make_video(d / "mpeg4.avi", seconds=1, fps=10, width=64, height=64, audio=False, codec="mpeg4"),
        "faststart": make_video(d / "fs.mp4", seconds=3, fps=25, audio=True, extra_args=["-movflags", "+faststart"]),
    }
    v["empty"] = make_empty(d / "empty.mp4")
    v["text"] = make_text_file(d / "text.mp4")
    v["truncated"] = make_truncated(v["tone"], d / "truncated.mp4")  # moov atom at the end: lost
    v["truncated_fs"] = make_truncated(v["faststart"], d / "truncated_fs.mp4")  # index kept, data missing
    data = bytearray(v["faststart"].read_bytes())
    rng = np.random.default_rng(0)
    for i in range(4096, len(data) - 64, 997):  # scribble over the media data, keep the header
        data[i] = int(rng.integers(256))
    (d / "corrupt.mp4").write_bytes(bytes(data))
    v["corrupt"] = d / "corrupt.mp4"
    return v


@pytest.fixture(scope="module")
def limits(media: dict[str, Path]) -> DecodeLimits:
    clips_dir = str(sample_clip("bikes.mp4").parent)
    return DecodeLimits(media_roots=(str(media["tone"].parent), clips_dir))


def _expected_samples(times: list[float], duration: float, fps: float) -> list[float]:
    """Independent reference: for each grid time, the first frame shown at or after it."""
    out: list[float] = []
    k = 0
    while times[0] + k / fps < duration - 1e-9:
        g = times[0] + k / fps
        later = [t for t in times if t >= g - 1e-3]
        if later and (not out or later[0] > out[-1]):
            out.append(later[0])
        k += 1
    return out


@pytest.mark.parametrize("name", SAMPLE_CLIPS)
def test_real_clip_windows_follow_frame_timestamps(name: str, limits: DecodeLimits) -> None:
    path = sample_clip(name)
    truth = frame_times(path)
    with open_video(str(path), limits) as video:
        info = video.info
        windows = list(video.windows(window_s=2.0, sample_fps=2.0))
    assert info.num_frames == len(truth)
    assert info.duration_s == pytest.approx(truth[-1] + (truth[-1] - truth[-2]), abs=2e-3)
    got = np.concatenate([w.timestamps for w in windows])
    expected = _expected_samples(truth, info.duration_s, 2.0)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    for i, w in enumerate(windows):
        assert w.index == i
        assert w.frames.dtype == np.uint8 and w.frames.shape == (len(w.timestamps), 224, 224, 3)
        assert w.start == pytest.approx(w.timestamps[0])
        assert w.end > w.timestamps[-1]
        assert len(w.audio) == round(w.end * 16000) - round(w.start * 16000)
        if i + 1 < len(windows):
            assert w.end == pytest.approx(windows[i + 1].start)  # stride == length: contiguous
    assert windows[-1].end == pytest.approx(info.duration_s)


def test_ntsc_times_and_overlapping_windows_share_frames(media: dict[str, Path], limits: DecodeLimits) -> None:
    with open_video(str(media["ntsc"]), limits) as video:
        plain = list(video.windows(window_s=3.0))
        overlap = list(video.windows(window_s=3.0, stride_s=1.5))
    ts = np.concatenate([w.timestamps for w in plain])
    np.testing.assert_allclose(ts, np.arange(7) * 1.001, atol=1e-4)  # 30000/1001 fps: frame k*30 at k*1.001 s
    bounds = [t for w in plain for t in (w.start, w.end)]
    assert bounds == pytest.approx([0.0, 3.003, 3.003, 6.006, 6.006, 7.007])
    assert [len(w.timestamps) for w in plain] == [3, 3, 1]  # last partial window kept
    assert [w.first_frame for w in overlap] == [0, 2, 3, 5]
    by_frame: dict[int, np.ndarray] = {}
    for w in overlap:
        for j, frame in enumerate(w.frames):
            k = w.first_frame + j
            if k in by_frame:
                np.testing.assert_array_equal(by_frame[k], frame)  # the same decoded frame in both windows
            by_frame[k] = frame
    assert sorted(by_frame) == list(range(7))


def test_variable_frame_rate_sampling(media: dict[str, Path], limits: DecodeLimits) -> None:
    truth = frame_times(media["vfr"])
    gaps = np.diff(truth)
    assert gaps.max() > 2.5 * gaps.min()  # really variable
    with open_video(str(media["vfr"]), limits) as video:
        got = np.concatenate([w.timestamps for w in video.windows(window_s=2.0, sample_fps=4.0)])
        duration = video.info.duration_s
    np.testing.assert_allclose(got, _expected_samples(truth, duration, 4.0), atol=1e-4)


def test_audio_track_and_its_absence(media: dict[str, Path], limits: DecodeLimits) -> None:
    with open_video(str(media["tone"]), limits) as video:
        assert video.info.has_audio
        w = next(iter(video.windows(window_s=2.0)))
    assert w.has_audio and w.audio.dtype == np.float32
    segment = w.audio[4000:20000]
    peak_hz = np.argmax(np.abs(np.fft.rfft(segment))) * 16000 / len(segment)
    assert abs(peak_hz - 440) <= 2  # the 440 Hz sine, resampled to 16 kHz mono
    with open_video(str(media["vertical"]), limits) as video:
        assert not video.info.has_audio
        w = next(iter(video.windows(window_s=2.0)))
    assert not w.has_audio and not w.audio.any() and len(w.audio) == 32000


def test_long_audio_is_streamed_and_matches_decord(media: dict[str, Path], limits: DecodeLimits) -> None:
    """Tracks longer than max_decord_audio_s come from an ffmpeg pipe; same samples up to ~1 ms."""
    streamed_limits = DecodeLimits(**{**limits.__dict__, "max_decord_audio_s": 0.0})
    with open_video(str(media["tone"]), limits) as video:
        whole = [w.audio for w in video.windows(window_s=1.0, stride_s=0.5)]
    with open_video(str(media["tone"]), streamed_limits) as video:
        streamed = [w.audio for w in video.windows(window_s=1.0, stride_s=0.5)]  # overlapping: reads forward only
        first = next(iter(video.windows(window_s=1.0)))  # a second pass starts a new stream
    assert [len(a) for a in streamed] == [len(a) for a in whole]
    np.testing.assert_array_equal(first.audio, streamed[0])
    for a, b in zip(whole, streamed, strict=True):
        assert np.sqrt(np.mean(b**2)) == pytest.approx(np.sqrt(np.mean(a**2)), rel=0.02)
    a, b = whole[1], streamed[1]
    lags = range(-48, 49)  # the two resamplers may differ by a few samples (48 = 3 ms)
    corr = [float(np.dot(a[100:-100], np.roll(b, k)[100:-100])) for k in lags]
    assert max(corr) > 0.98 * float(np.dot(a[100:-100], a[100:-100]))


def test_vertical_video_and_frame_size(media: dict[str, Path], limits: DecodeLimits) -> None:
    with open_video(str(media["vertical"]), limits) as video:
        assert (video.info.width, video.info.height) == (180, 320)
        small = next(iter(video.windows(window_s=1.0, size=112)))
        native = next(iter(video.windows(window_s=1.0, size=None)))
    assert small.frames.shape == (1, 112, 112, 3)
    assert native.frames.shape == (1, 320, 180, 3)


def test_rotated_phone_video_comes_out_upright(media: dict[str, Path], limits: DecodeLimits) -> None:
    rotated = make_rotated(media["tone"], media["tone"].parent / "rotated.mp4", 90)
    with open_video(str(rotated), limits) as video:
        assert (video.info.width, video.info.height) == (240, 320)  # displayed size, not coded size
        frame = next(iter(video.windows(window_s=1.0, size=None))).frames[0]
    reference = first_frame_rgb(rotated)  # what ffmpeg shows, display matrix applied
    assert frame.shape == reference.shape == (320, 240, 3)
    assert np.abs(frame.astype(int) - reference.astype(int)).mean() < 2


def test_mpeg4_part2_decodes(media: dict[str, Path], limits: DecodeLimits) -> None:
    with open_video(str(media["mpeg4"]), limits) as video:
        assert sum(len(w.timestamps) for w in video.windows(window_s=1.0, sample_fps=5.0)) == 5


def test_corrupt_media_data_decodes_without_crashing(media: dict[str, Path], limits: DecodeLimits) -> None:
    with open_video(str(media["corrupt"]), limits) as video:
        frames = [w.frames for w in video.windows(window_s=1.0)]
    assert len(frames) == 3


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("empty", VideoUnreadableError, "empty"),
        ("text", VideoUnreadableError, "not a readable video"),
        ("truncated", VideoUnreadableError, "not a readable video"),
        ("truncated_fs", VideoUnreadableError, "decoding failed"),
        ("av1", VideoUnreadableError, "codec 'av1'"),
    ],
)
def test_bad_files_raise_typed_errors(
    name: str, error: type[Exception], words: str, media: dict[str, Path], limits: DecodeLimits
) -> None:
    with pytest.raises(error, match=words), open_video(str(media[name]), limits) as video:
        for _ in video.windows():
            pass


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"max_width": 200}, "resolution 320x240 is over"),
        ({"max_height": 200}, "resolution 320x240 is over"),
        ({"max_duration_s": 2.0}, "duration 3.0 s is over"),
        ({"max_bytes": 1000}, "over the limit of 1000"),
    ],
)
def test_limits(change: dict[str, float], words: str, media: dict[str, Path], limits: DecodeLimits) -> None:
    strict = DecodeLimits(**{**limits.__dict__, **change})
    with pytest.raises(VideoLimitError, match=words), open_video(str(media["tone"]), strict):
        pass


def test_unsupported_and_missing_sources(media: dict[str, Path], limits: DecodeLimits) -> None:
    for uri in ("ftp://example.com/a.mp4", "s3://bucket/a.mp4", "relative/a.mp4", ""):
        with pytest.raises(UnsupportedSourceError), open_video(uri, limits):
            pass
    with pytest.raises(VideoUnreadableError, match="does not exist"), open_video(str(media["tone"]) + ".nope", limits):
        pass


def test_bad_inputs_never_kill_the_process(media: dict[str, Path], limits: DecodeLimits) -> None:
    """The whole bad set, decoded to the end in a fresh interpreter: it must exit normally."""
    names = ["empty", "text", "truncated", "truncated_fs", "av1", "corrupt"]
    script = (
        "import json, sys\n"
        "from segtag.decode import DecodeLimits, open_video\n"
        "limits = DecodeLimits(media_roots=(sys.argv[1],))\n"
        "out = {}\n"
        "for path in sys.argv[2:]:\n"
        "    try:\n"
        "        with open_video(path, limits) as v:\n"
        "            n = sum(len(w.timestamps) for w in v.windows())\n"
        "        out[path] = 'ok:%d' % n\n"
        "    except Exception as exc:\n"
        "        out[path] = type(exc).__name__\n"
        "print(json.dumps(out))\n"
    )
    args = [str(media[n]) for n in names]
    proc = subprocess.run(
        [sys.executable, "-c", script, str(media["tone"].parent), *args], capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert [result[a] for a in args] == ["VideoUnreadableError"] * 5 + ["ok:3"]


def test_limits_from_settings() -> None:
    s = Settings.load(env={}, media_roots=("/srv/videos",), max_width=640, http_timeout_s=5.0)
    lim = DecodeLimits.from_settings(s)
    assert lim.media_roots == ("/srv/videos",) and lim.max_width == 640 and lim.http_timeout_s == 5.0


def test_sampling_and_window_planning_rules() -> None:
    pts = np.arange(100) / 10.0  # 10 fps, 10 s
    idx = sample_frames(pts, 10.0, 1.0)
    np.testing.assert_array_equal(idx, np.arange(10) * 10)
    slow = np.arange(5) * 2.0  # 0.5 fps source sampled at 1 fps: no duplicate frames
    np.testing.assert_array_equal(sample_frames(slow, 10.0, 1.0), np.arange(5))
    times = np.arange(10.0)
    assert plan_windows(times, 10.0, 4.0, 4.0) == [(0, 4, 0.0, 4.0), (4, 8, 4.0, 8.0), (8, 10, 8.0, 10.0)]
    # Overlap: stop at the first window that reaches the end.
    assert plan_windows(times, 10.0, 4.0, 3.0) == [(0, 4, 0.0, 4.0), (3, 7, 3.0, 7.0), (6, 10, 6.0, 10.0)]
    gap = np.array([0.0, 1.0, 7.0, 8.0])  # nothing between 2 s and 7 s: that window is skipped
    assert [p[:2] for p in plan_windows(gap, 9.0, 3.0, 3.0)] == [(0, 2), (2, 4)]
    with pytest.raises(ValueError, match="sample_fps"):
        sample_frames(pts, 10.0, 0.0)


def test_probe_parser_ignores_cover_art_and_hex_tags() -> None:
    text = (
        "  Duration: 01:02:03.50, start: 0.000000, bitrate: 100 kb/s\n"
        "  Stream #0:0[0x1](und): Video: mjpeg (Baseline), yuvj420p, 600x600, 90k tbr (attached pic)\n"
        "  Stream #0:1[0x2](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv), 1920x1080 [SAR 1:1], "
        "2000 kb/s, 29.97 fps, 29.97 tbr, 30k tbn (default)\n"
        "  Stream #0:2[0x3](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo\n"
    )
    p = parse_probe(text)
    assert p is not None
    assert (p.codec, p.width, p.height, p.fps, p.has_audio) == ("h264", 1920, 1080, 29.97, True)
    assert p.duration_s == pytest.approx(3723.5)
    assert parse_probe("Input #0, wav\n  Stream #0:0: Audio: pcm_s16le, 16000 Hz") is None
