"""End-to-end throughput of the streaming tagger beside the decode floor of the same files.

What it does, on its own Kafka and Redis (free ports, a temporary state directory):

1. ``segtag synth`` N videos (cached in ``--work``).
2. Decode floor: ``ffmpeg -i FILE -vf fps=1 -f null -`` over every file, one after
   the other - the least any pipeline sampling 1 frame per second must spend.
3. Pipeline: one ``segtag tagger`` process; once it is up, all N upload events are
   produced at once and the statuses in Redis are followed until every video is done.
   Throughput is N over the time from the first produce to the last ``done``;
   produce-to-done latency per video is Redis ``updated_at`` minus its produce time
   (it includes the wait in the backlog, since all videos arrive together).

Prints a table and, with ``--json``, the numbers as JSON.

    .venv/bin/python bench/bench_pipeline.py --videos 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

import imageio_ffmpeg

from consumers.tagger.connections import PRODUCER_RETRIES
from segtag.bus import ensure_topics, make_producer
from segtag.events import make_upload
from segtag.services import isolated_settings, services_down, services_up
from segtag.settings import Settings
from segtag.sinks.redis_sink import RedisSink, make_redis

REPO = Path(__file__).resolve().parent.parent


def synth(work: Path, n: int, seed: int, min_s: int, max_s: int) -> list[dict[str, Any]]:
    out = work / f"synth-{n}-{seed}-{min_s}-{max_s}"
    if not (out / "manifest.jsonl").is_file():
        subprocess.run(
            [sys.executable, "-m", "segtag", "synth", "--out", str(out), "--videos", str(n), "--seed", str(seed),
             "--min-duration", str(min_s), "--max-duration", str(max_s)],
            check=True, cwd=REPO, capture_output=True,
        )  # fmt: skip
    items = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    for it in items:
        it["path"] = it["uri"].removeprefix("file://")
        it["duration_s"] = max((s["end"] for s in it["segments"]), default=0.0)
    return items


def decode_floor(paths: list[str], sample_fps: float) -> float:
    """Seconds ffmpeg needs to decode every file and sample it at ``sample_fps``."""
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    t0 = time.perf_counter()
    for p in paths:
        subprocess.run(
            [exe, "-v", "error", "-nostdin", "-i", p, "-vf", f"fps={sample_fps:g}", "-f", "null", "-"], check=True
        )
    return time.perf_counter() - t0


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGTAG_")}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        env["SEGTAG_" + f.name.upper()] = ",".join(value) if isinstance(value, tuple) else str(value)
    return env


def wait(predicate: Any, timeout_s: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the tagger exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run_pipeline(settings: Settings, items: list[dict[str, Any]], log: Path, timeout_s: float) -> dict[str, Any]:
    sink = RedisSink(make_redis(settings.redis_url), settings.redis_prefix)
    ensure_topics(settings)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "segtag", "tagger", "--worker-id", "bench"],
            cwd=REPO, env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        health = f"{settings.redis_prefix}:health:tagger:bench"
        wait(lambda: sink.client.exists(health) == 1, 300, "the tagger to start", proc)
        time.sleep(3)  # let it join the group and get its partitions
        producer = make_producer(settings, **PRODUCER_RETRIES)
        produced: dict[str, float] = {}
        for it in items:
            vid = f"bench-{it['video_id']}"
            event = make_upload(vid, Path(it["path"]).as_uri(), it["title"])
            produced[vid] = time.time()
            producer.send(settings.uploads_topic, key=vid.encode(), value=event.to_bytes())
        producer.flush(30)
        producer.close()
        vids = list(produced)
        wait(lambda: all(s == "done" for s in sink.statuses(vids).values()), timeout_s, "all videos done", proc)
        done_at = {}
        for vid in vids:
            video = sink.read_video(vid)
            assert video is not None
            done_at[vid] = datetime.fromisoformat(video["updated_at"]).timestamp()
    finally:
        proc.terminate()
        proc.wait(60)
    latencies = [done_at[v] - produced[v] for v in vids]
    wall = max(done_at.values()) - min(produced.values())
    stages: dict[str, list[float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        if '"event": "video_done"' in line:
            rec = json.loads(line[line.index("{") :])
            for k, v in rec["timings"].items():
                stages.setdefault(k, []).append(v)
    return {
        "wall_s": wall,
        "latency_p50_s": percentile(latencies, 0.5),
        "latency_p95_s": percentile(latencies, 0.95),
        "stage_mean_s": {k: statistics.fmean(v) for k, v in stages.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--min-duration", type=int, default=15)
    parser.add_argument("--max-duration", type=int, default=30)
    parser.add_argument("--model-dir", default=str(REPO / "models" / "demo"))
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "segtag-bench-pipeline")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    args.work.mkdir(parents=True, exist_ok=True)
    items = synth(args.work, args.videos, args.seed, args.min_duration, args.max_duration)
    video_s = sum(it["duration_s"] for it in items)
    state = Path(tempfile.mkdtemp(prefix="state-", dir=args.work))
    settings = isolated_settings(state, model_dir=args.model_dir, media_roots=(str(args.work),), device="cpu")
    floor_s = decode_floor([it["path"] for it in items], settings.sample_fps)
    services_up(settings)
    try:
        pipe = run_pipeline(settings, items, args.work / "tagger.log", args.timeout)
    finally:
        services_down(settings)
    n = len(items)
    result = {
        "videos": n,
        "video_seconds": round(video_s, 1),
        "decode_floor": {
            "wall_s": round(floor_s, 2),
            "videos_per_min": round(n / floor_s * 60, 2),
            "rtf": round(video_s / floor_s, 2),
        },
        "pipeline": {
            "wall_s": round(pipe["wall_s"], 2),
            "videos_per_min": round(n / pipe["wall_s"] * 60, 2),
            "rtf": round(video_s / pipe["wall_s"], 2),
            "latency_p50_s": round(pipe["latency_p50_s"], 2),
            "latency_p95_s": round(pipe["latency_p95_s"], 2),
            "stage_mean_s": {k: round(v, 3) for k, v in pipe["stage_mean_s"].items()},
        },
    }
    result["pipeline_over_floor"] = round(
        result["pipeline"]["videos_per_min"] / result["decode_floor"]["videos_per_min"], 3
    )
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        f, p = result["decode_floor"], result["pipeline"]
        sys.stdout.write(
            f"{n} videos, {video_s:.0f} s of video\n"
            f"decode floor: {f['wall_s']} s, {f['videos_per_min']} videos/min, RTF {f['rtf']}\n"
            f"pipeline:     {p['wall_s']} s, {p['videos_per_min']} videos/min, RTF {p['rtf']}, "
            f"produce-to-done p50 {p['latency_p50_s']} s p95 {p['latency_p95_s']} s\n"
            f"stage means per video: {p['stage_mean_s']}\n"
            f"pipeline / floor: {result['pipeline_over_floor']}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
