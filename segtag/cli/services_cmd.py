"""``segtag services up|down|status``: the local Kafka broker and Redis."""

from __future__ import annotations

import argparse

from segtag.cli import emit
from segtag.services import ServiceStatus, services_down, services_status, services_up
from segtag.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("services", help="start, stop or inspect the local Kafka broker and Redis")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run)


def _text(rows: list[dict[str, object]]) -> str:
    lines = []
    for r in rows:
        state = "running" if r["running"] else "stopped"
        pid = f"pid {r['pid']}" if r["pid"] else "-"
        lines.append(f"{r['name']:6} {state:8} {r['address']:28} {pid:12} {r['action']:16} log {r['log_file']}")
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    actions = {"up": services_up, "down": services_down, "status": services_status}
    statuses: list[ServiceStatus] = actions[args.action](settings)
    emit([s.as_dict() for s in statuses], args.json, _text)
    return 0
