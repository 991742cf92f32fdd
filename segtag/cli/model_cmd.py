"""``segtag train``, ``segtag eval`` and ``segtag model-info``."""

from __future__ import annotations

import argparse
from typing import Any

from segtag.cli import emit
from segtag.settings import Settings

# NeXtVLAD (Lin et al. 2018) reports its best single YouTube-8M model with "less than 80M parameters".
NEXTVLAD_PUBLISHED = "under 80M parameters (NeXtVLAD, Lin et al. 2018)"
NEXTVLAD_LIMIT = 80_000_000


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the parser."""
    p = sub.add_parser("train", help="train the tagger on a features directory or YouTube-8M TFRecords")
    p.add_argument(
        "--data", required=True, help="features directory (index.jsonl), manifest directory or directory of *.tfrecord"
    )
    p.add_argument("--out", required=True, help="model directory to write")
    # dest differs from the top-level --config (the settings file)
    p.add_argument("--config", dest="model_config", help="JSON with 'model' (TaggerConfig) and 'train' keys")
    p.add_argument("--preset", default="segtag", choices=["demo", "segtag", "yt8m"], help="model size")
    p.add_argument("--epochs", type=int, help="number of epochs (default 10)")
    p.add_argument("--batch-size", type=int, help="videos per step (default 32)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--device", help="cpu, cuda or auto (default: SEGTAG_DEVICE)")
    p.add_argument("--threads", type=int, help="CPU threads (default: cores not busy by the load average, at least 1)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    p.add_argument("--json", action="store_true", help="print the per-epoch rows as JSON")
    p.set_defaults(handler=run_train)

    p = sub.add_parser("eval", help="evaluate a model directory on labelled features or TFRecords")
    p.add_argument("--model", help="model directory (default: SEGTAG_MODEL_DIR)")
    p.add_argument("--data", required=True, help="features directory (index.jsonl) or directory of *.tfrecord")
    p.add_argument("--device", help="cpu, cuda or auto (default: SEGTAG_DEVICE)")
    p.add_argument("--threads", type=int, help="CPU threads (default: cores not busy by the load average, at least 1)")
    p.add_argument("--json", action="store_true", help="print JSON (the default output is JSON too)")
    p.set_defaults(handler=run_eval)

    p = sub.add_parser("model-info", help="parameter count and sizes of a preset or a model directory")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--preset", choices=["yt8m", "segtag", "demo"])
    g.add_argument("--model", help="model directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_info)


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    """Handler of ``segtag train``."""
    from segtag.datasets.resolve import features_dir_for
    from segtag.training import format_epoch, train

    overrides = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}
    rows = train(
        features_dir_for(args.data, settings),  # a synth/manifest directory is extracted first (cached)
        args.out,
        preset_name=args.preset,
        config_file=args.model_config,
        epochs=args.epochs,
        seed=args.seed,
        resume=args.resume,
        device=args.device or settings.device,
        overrides=overrides,
        threads=args.threads,
    )
    emit(rows, args.json, lambda rs: "\n".join(format_epoch(r) for r in rs) + f"\nmodel written to {args.out}")
    return 0


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    """Handler of ``segtag eval``: one JSON object."""
    import torch

    from segtag.datasets.resolve import features_dir_for
    from segtag.evaluation import evaluate
    from segtag.features.device import resolve_device
    from segtag.training import available_cores

    torch.set_num_threads(args.threads or available_cores())
    device = str(resolve_device(args.device or settings.device))
    result = evaluate(args.model or settings.model_dir, features_dir_for(args.data, settings), device)
    emit(result, True, str)
    return 0


def model_info(preset_name: str | None = None, model_dir: str | None = None) -> dict[str, Any]:
    """Parameter counts of a preset or a model directory, beside NeXtVLAD's published size."""
    from segtag.model import describe, preset

    if model_dir is not None:
        from segtag.checkpoint import load_model

        loaded = load_model(model_dir, "cpu")
        config, source, version = loaded.config, model_dir, loaded.version
    else:
        config, source, version = preset(preset_name or "segtag"), f"preset {preset_name}", None
    info = describe(config)
    return {
        "source": source,
        "version": version,
        **info,
        "config": config.to_dict(),
        "nextvlad_published": NEXTVLAD_PUBLISHED,
        "under_80m": info["parameters"] < NEXTVLAD_LIMIT,
    }


def _info_text(info: dict[str, Any]) -> str:
    lines = [
        f"{info['source']}" + (f" ({info['version']})" if info["version"] else ""),
        f"parameters: {info['parameters']:,} ({info['fp32_mb']} MB fp32)",
        f"published:  {info['nextvlad_published']}" + ("  -> below it" if info["under_80m"] else "  -> above it"),
    ]
    lines += [f"  {name:12} {count:>12,}" for name, count in info["parts"].items()]
    return "\n".join(lines)


def run_info(args: argparse.Namespace, settings: Settings) -> int:
    """Handler of ``segtag model-info``."""
    emit(model_info(args.preset, args.model), args.json, _info_text)
    return 0
