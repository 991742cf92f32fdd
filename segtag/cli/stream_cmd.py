"""``segtag produce``, ``segtag tagger`` and ``segtag tag`` (local mode)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from segtag.cli import emit
from segtag.errors import SinkUnavailableError
from segtag.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the parser."""
    p = sub.add_parser("produce", help="send one upload event to the uploads topic")
    p.add_argument("--video-id", required=True, help="1-128 characters of A-Z a-z 0-9 . _ : -")
    p.add_argument("--uri", required=True, help="file:///abs/path (inside SEGTAG_MEDIA_ROOTS) or https://...")
    p.add_argument("--title", default="", help="the video's title (optional)")
    p.add_argument("--metadata", default=None, help="a JSON object of extra metadata (optional)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_produce)

    t = sub.add_parser("tagger", help="run a tagger (a member of the consumer group) until SIGTERM")
    t.add_argument("--worker-id", default=None, help="name in logs and the health key (default host-pid-random)")
    t.add_argument("--max-in-flight", type=int, default=8, help="uploads in hand before the consumer pauses")
    t.add_argument("--check", action="store_true", help="do not run: list live taggers, exit 1 if there is none")
    t.add_argument("--json", action="store_true", help="print JSON (with --check)")
    t.set_defaults(handler=run_tagger)

    g = sub.add_parser("tag", help="tag one local video file in this process (no Kafka, no Redis)")
    g.add_argument("path", help="a video file")
    g.add_argument("--title", default="", help="the video's title (optional)")
    g.add_argument("--json", action="store_true", help="print JSON")
    g.set_defaults(handler=run_tag)


# --- produce --------------------------------------------------------------------


def run_produce(args: argparse.Namespace, settings: Settings) -> int:
    from kafka.errors import KafkaError

    from segtag.bus import ensure_topics, make_producer
    from segtag.errors import InvalidEventError
    from segtag.events import make_upload

    metadata = None
    if args.metadata:
        try:
            metadata = json.loads(args.metadata)
        except ValueError as exc:
            raise InvalidEventError(f"--metadata is not JSON: {exc}") from exc
    # Validated exactly as the tagger will: a bad event fails here, not on the dead-letter topic.
    event = make_upload(args.video_id, args.uri, args.title, metadata=metadata)
    ensure_topics(settings, [settings.uploads_topic])
    from consumers.tagger.connections import PRODUCER_RETRIES

    producer = make_producer(settings, **PRODUCER_RETRIES)
    try:
        meta = producer.send(settings.uploads_topic, key=event.video_id.encode(), value=event.to_bytes()).get(30)
    except KafkaError as exc:
        raise SinkUnavailableError(f"the broker did not take the event: {exc!r}") from exc
    finally:
        producer.close(timeout=10)
    out = {"topic": meta.topic, "partition": meta.partition, "offset": meta.offset, "event": event.to_json()}
    emit(out, args.json, lambda d: f"sent {d['event']['video_id']} to {d['topic']}[{d['partition']}]@{d['offset']}")
    return 0


# --- tagger ---------------------------------------------------------------------


def _check_text(beats: list[dict[str, Any]]) -> str:
    if not beats:
        return "no live tagger"
    lines = []
    for b in beats:
        lines.append(
            f"{b.get('worker')}: partitions {b.get('partitions')} in flight {b.get('in_flight')} "
            f"done {b.get('done')} failed {b.get('failed')} model {b.get('model_version')} "
            f"(beat {b.get('updated_at')}, expires in {b.get('ttl_s')} s)"
        )
    return "\n".join(lines)


def run_tagger(args: argparse.Namespace, settings: Settings) -> int:
    if args.check:
        import redis

        from consumers.tagger.connections import redis_for_check
        from consumers.tagger.health import check

        client = redis_for_check(settings)
        try:
            beats = check(client, settings.redis_prefix, args.worker_id)
        except redis.RedisError as exc:
            raise SinkUnavailableError(f"cannot read the health keys from {settings.redis_url}: {exc}") from exc
        finally:
            client.close()
        emit(beats, args.json, _check_text)
        return 0 if beats else 1

    from consumers.tagger.worker import TaggerWorker

    worker = TaggerWorker(settings, worker_id=args.worker_id, max_in_flight=args.max_in_flight)
    worker.install_signal_handlers()
    return worker.run()


# --- tag (local mode) -------------------------------------------------------------


def _tag_text(data: dict[str, Any]) -> str:
    lines = [
        f"{data['path']}  ({data['duration_s']:.1f} s, model {data['model_version']})",
        "tags: " + ", ".join(f"{t['tag']} {t['score']:.2f}" for t in data["tags"]),
        "segments:",
    ]
    for s in data["segments"]:
        tags = ", ".join(f"{t['tag']} {t['score']:.2f}" for t in s["tags"])
        concepts = ", ".join(c["concept"] for c in s["concepts"])
        lines.append(f"  {s['start']:7.1f}-{s['end']:7.1f}  {tags}   [{concepts}]")
    return "\n".join(lines)


def run_tag(args: argparse.Namespace, settings: Settings) -> int:
    from segtag.errors import VideoUnreadableError
    from segtag.pipeline import VideoTagger

    path = Path(args.path).expanduser().resolve()
    if not path.is_file():
        raise VideoUnreadableError(f"{args.path} is not a file")
    # Local mode reads the file the user named: its directory is a media root for this run.
    settings = settings.replace(media_roots=(*settings.media_roots, str(path.parent)))
    result = VideoTagger(settings).tag(path.as_uri(), args.title)
    data = {"path": str(path), **result.to_json()}
    emit(data, args.json, _tag_text)
    return 0
