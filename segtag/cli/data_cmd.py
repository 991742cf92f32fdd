"""``segtag synth`` (labelled synthetic videos) and ``segtag extract`` (manifest -> features dir)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from segtag.cli import emit
from segtag.settings import Settings
from segtag.synth import DEFAULT_SIZES, SynthOptions, generate


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``synth`` and ``extract`` to the parser."""
    p = sub.add_parser(
        "synth",
        help="generate labelled synthetic videos (mp4 + manifest.jsonl + vocabulary.json)",
        description="Generate videos made of 5/10/15 s segments of known visual and audio sources, "
        "with exact segment labels (vocabulary in docs/synth.md). The seed fixes everything.",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory (videos/, manifest.jsonl)")
    p.add_argument("--videos", type=int, default=20, help="number of videos (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--min-duration", type=int, default=15, help="shortest video in seconds (default 15)")
    p.add_argument("--max-duration", type=int, default=30, help="longest video in seconds (default 30)")
    p.add_argument("--jobs", type=int, default=2, help="parallel ffmpeg encodes (default 2)")
    p.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=DEFAULT_SIZES,
        help="comma-separated WxH frame sizes to draw from (default 320x180,180x320,256x256,426x240)",
    )
    p.add_argument("--no-audio-fraction", type=float, default=0.15, help="share of videos without audio track")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_synth)

    e = sub.add_parser(
        "extract",
        help="extract features for every video of a manifest into a features directory",
        description="Run the feature extractor over a manifest.jsonl; writes DIR/features/*.npz, "
        "DIR/index.jsonl and DIR/vocabulary.json. Already extracted videos are skipped; "
        "bad videos are reported and left out.",
    )
    e.add_argument("--manifest", required=True, type=Path, help="manifest.jsonl (docs/contracts.md)")
    e.add_argument("--out", required=True, type=Path, help="features directory to write")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(handler=run_extract)


def _parse_sizes(raw: str) -> tuple[tuple[int, int], ...]:
    sizes = []
    for part in raw.split(","):
        try:
            w, h = (int(v) for v in part.lower().strip().split("x"))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"bad size {part!r}: expected WxH, e.g. 320x180") from exc
        sizes.append((w, h))
    return tuple(sizes)


def _synth_text(d: dict[str, Any]) -> str:
    return (
        f"{d['videos']} videos ({d['rendered']} rendered now) in {d['out_dir']}\n"
        f"manifest {d['manifest']}\nvocabulary {d['vocabulary']}"
    )


def run_synth(args: argparse.Namespace, settings: Settings) -> int:
    """Handler of ``segtag synth``."""
    options = SynthOptions(
        videos=args.videos,
        seed=args.seed,
        min_duration_s=args.min_duration,
        max_duration_s=args.max_duration,
        sizes=args.sizes,
        no_audio_fraction=args.no_audio_fraction,
        jobs=args.jobs,
    )
    result = generate(args.out, options)
    data = {
        "out_dir": str(result.out_dir),
        "manifest": str(result.manifest),
        "vocabulary": str(result.vocabulary),
        "videos": result.videos,
        "rendered": result.rendered,
    }
    emit(data, args.json, _synth_text)
    return 0


def _extract_text(d: dict[str, Any]) -> str:
    lines = [
        f"{d['total']} videos: {d['extracted']} extracted, {d['cached']} cached, "
        f"{len(d['failed'])} failed -> {d['out_dir']}"
    ]
    lines += [f"  failed {f['video_id']}: {f['error_type']}: {f['error']}" for f in d["failed"]]
    return "\n".join(lines)


def run_extract(args: argparse.Namespace, settings: Settings) -> int:
    """Handler of ``segtag extract``. Bad videos are listed but do not fail the run;
    the exit status is 1 only when no video at all could be extracted."""
    from segtag.datasets.resolve import extract_manifest  # keeps `segtag --help` fast

    report = extract_manifest(args.manifest, args.out, settings)
    emit(report.as_dict(), args.json, _extract_text)
    usable = report.extracted + report.cached
    return 1 if report.total and not usable else 0
