"""The ``segtag`` command. Each group of subcommands lives in its own module with a
``register(subparsers)`` function; settings are built here, once, and passed down."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from segtag.errors import SegtagError
from segtag.settings import Settings

log = logging.getLogger("segtag")

Handler = Callable[[argparse.Namespace, Settings], int]


def _modules() -> list[Any]:
    from segtag.cli import data_cmd, model_cmd, query_cmd, services_cmd, stream_cmd

    return [services_cmd, data_cmd, model_cmd, stream_cmd, query_cmd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segtag", description="Streaming temporal-segment video tagger.")
    parser.add_argument("--config", help="TOML config file (keys are Settings field names); also SEGTAG_CONFIG")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default: SEGTAG_LOG_LEVEL or INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _modules():
        module.register(sub)
    return parser


def emit(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    """Print data as JSON (``--json``) or through text() for people."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(text(data).rstrip("\n") + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        overrides = {"log_level": args.log_level} if args.log_level else {}
        settings = Settings.load(config_file=args.config, **overrides)
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python is chatty at INFO
        handler: Handler = args.handler
        return handler(args, settings)
    except SegtagError as exc:
        sys.stderr.write(f"segtag: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
