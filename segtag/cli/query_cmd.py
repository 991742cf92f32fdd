"""``segtag indexer``, ``segtag api`` and the query commands ``tags``, ``find-tag``, ``similar``."""

from __future__ import annotations

import argparse
from typing import Any

from segtag.cli import emit
from segtag.index import IndexConfig
from segtag.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the index service and the query commands."""
    p = sub.add_parser("indexer", help="run the FAISS segment index service (single writer)")
    _index_args(p)
    p.add_argument("--snapshot-interval", type=float, default=10.0, help="seconds between snapshots (default 10)")
    p.add_argument("--snapshot-every", type=int, default=1000, help="snapshot after this many events (default 1000)")
    p.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (0: off)")
    p.set_defaults(handler=run_indexer_cmd)

    p = sub.add_parser("api", help="serve the HTTP query API (OpenAPI at /docs)")
    _index_args(p, kind=False)
    p.add_argument("--host", help="default: SEGTAG_API_HOST")
    p.add_argument("--port", type=int, help="default: SEGTAG_API_PORT")
    p.set_defaults(handler=run_api_cmd)

    p = sub.add_parser("tags", help="a video's tags and segments")
    p.add_argument("video_id")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_tags)

    p = sub.add_parser("find-tag", help="segments carrying a tag, best first")
    p.add_argument("tag")
    p.add_argument("--min-score", type=float, default=0.0)
    p.add_argument("--limit", type=_positive, default=20)
    p.add_argument("--offset", type=_non_negative, default=0)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_find_tag)

    p = sub.add_parser("similar", help="segments that look and sound like a segment")
    p.add_argument("segment_id")
    p.add_argument("--k", type=_positive, default=10)
    p.add_argument("--min-score", type=float, default=-1.0)
    p.add_argument("--tag", help="only segments carrying this tag")
    p.add_argument("--exclude-self", action="store_true", help="leave the segment itself out")
    _index_args(p, kind=False)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_similar)


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _index_args(p: argparse.ArgumentParser, kind: bool = True) -> None:
    g = p.add_argument_group("index tunables (defaults: IndexConfig)")
    if kind:
        g.add_argument("--nlist", type=_positive, help="IVF lists")
        g.add_argument("--train-min", type=_non_negative, help="vectors before IVF is trained (0: 39 * nlist)")
        g.add_argument("--hnsw-m", type=_positive, help="HNSW links per node")
    g.add_argument("--nprobe", type=_positive, help="IVF lists scanned per query")
    g.add_argument("--ef-search", type=_positive, help="HNSW search breadth")


def _index_config(args: argparse.Namespace, settings: Settings) -> IndexConfig:
    names = ("nlist", "train_min", "hnsw_m", "nprobe", "ef_search")
    return IndexConfig.from_settings(settings, **{n: getattr(args, n, None) for n in names})


def run_indexer_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.indexer import IndexerOptions, run_indexer

    options = IndexerOptions(
        index=_index_config(args, settings),
        snapshot_interval_s=args.snapshot_interval,
        snapshot_every=args.snapshot_every,
        metrics_port=args.metrics_port,
    )
    return run_indexer(settings, options)


def run_api_cmd(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from segtag.api import create_app

    app = create_app(settings, search_overrides={"nprobe": args.nprobe, "ef_search": args.ef_search})
    uvicorn.run(app, host=args.host or settings.api_host, port=args.port or settings.api_port, log_level="info")
    return 0


def _client(settings: Settings, args: argparse.Namespace | None = None) -> Any:
    from segtag.query import IndexReader, SegtagClient

    overrides = {"nprobe": args.nprobe, "ef_search": args.ef_search} if args is not None else None
    return SegtagClient(settings, reader=IndexReader(settings.index_dir, overrides))


def _fmt_tags(tags: list[dict[str, Any]], n: int = 4) -> str:
    return ", ".join(f"{t['tag']} {t['score']:.2f}" for t in tags[:n]) or "-"


def _segment_table(items: list[dict[str, Any]], score_name: str) -> str:
    if not items:
        return "(no segments)"
    lines = [f"{score_name:>7}  {'segment':<28} {'start':>7} {'end':>7}  tags"]
    for s in items:
        score = f"{s['score']:.3f}" if s.get("score") is not None else "-"
        lines.append(f"{score:>7}  {s['segment_id']:<28} {s['start']:7.1f} {s['end']:7.1f}  {_fmt_tags(s['tags'])}")
    return "\n".join(lines)


def _video_text(d: dict[str, Any]) -> str:
    head = [
        f"video {d['video_id']}  status {d['status']}  version {d['version']}  model {d['model_version'] or '-'}",
        f"title: {d['title'] or '-'}",
        f"tags: {_fmt_tags(d['tags'], 10)}",
    ]
    if d.get("error"):
        head.append(f"error: {d['error']}")
    return "\n".join([*head, "", _segment_table(d["segments"], "")])


def run_tags(args: argparse.Namespace, settings: Settings) -> int:
    client = _client(settings)
    try:
        emit(client.video(args.video_id).as_dict(), args.json, _video_text)
    finally:
        client.close()
    return 0


def run_find_tag(args: argparse.Namespace, settings: Settings) -> int:
    client = _client(settings)
    try:
        page = client.segments_with_tag(args.tag, args.min_score, args.offset, args.limit)
    finally:
        client.close()

    def text(d: dict[str, Any]) -> str:
        shown = f"{d['offset'] + 1}-{d['offset'] + len(d['items'])}" if d["items"] else "none"
        head = f"tag {d['tag']!r}: {d['total']} segments with score >= {d['min_score']}, showing {shown}"
        return head + "\n" + _segment_table(d["items"], "score")

    emit(page.as_dict(), args.json, text)
    return 0


def run_similar(args: argparse.Namespace, settings: Settings) -> int:
    client = _client(settings, args)
    try:
        result = client.similar_to_segment(
            args.segment_id, k=args.k, min_score=args.min_score, tag=args.tag, include_self=not args.exclude_self
        )
    finally:
        client.close()

    def text(d: dict[str, Any]) -> str:
        return f"segments similar to {d['query']}:\n" + _segment_table(d["items"], "cosine")

    emit(result.as_dict(), args.json, text)
    return 0
