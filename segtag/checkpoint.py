"""Model directories: weights, config, vocabulary, model card and metrics.

Layout of a model directory::

    model.safetensors   weights (fp32)
    config.json         {"model": TaggerConfig fields, "features": {window_s, sample_fps, rgb_dim, ...}, "name": ...}
    vocabulary.json     list of tag names, index = class id
    MODEL_CARD.md       data, command and metrics, for people
    metrics.json        the evaluation metrics at save time

The version string is ``<name>-<first 8 hex of sha256(model.safetensors)>``, so it
changes exactly when the weights change.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from segtag.errors import ModelError
from segtag.model import SegTagger, TaggerConfig

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
VOCABULARY = "vocabulary.json"
CARD = "MODEL_CARD.md"
METRICS = "metrics.json"


@dataclass
class LoadedModel:
    """A model ready for inference, with what is needed to interpret it."""

    model: SegTagger
    config: TaggerConfig
    vocabulary: list[str]
    version: str


def weights_version(path: str | Path, name: str = "model") -> str:
    """``<name>-<sha8>`` of a weights file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return f"{name}-{digest.hexdigest()[:8]}"


def save_model(
    directory: str | Path, model: SegTagger, vocabulary: list[str], card: dict[str, Any] | None = None
) -> str:
    """Write a model directory and return its version string.

    ``card`` may hold ``name`` (default "model"), ``data``, ``command``,
    ``metrics`` (a dict, also written to metrics.json) and ``notes``.
    """
    card = dict(card or {})
    cfg = model.config
    if len(vocabulary) != cfg.num_classes:
        raise ModelError(f"vocabulary has {len(vocabulary)} tags but the model has {cfg.num_classes} classes")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    name = str(card.get("name", "model"))
    # contiguous fp32 CPU copies: safetensors refuses shared or non-contiguous storage
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS + ".tmp")
    # One metadata key only: safetensors writes the metadata map in hash order, so two keys
    # could swap between saves and change the version string of identical weights.
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / WEIGHTS)
    features = {
        "window_s": cfg.window_s,
        "sample_fps": cfg.sample_fps,
        "rgb_dim": cfg.rgb_dim,
        "audio_dim": cfg.audio_dim,
        "text_dim": cfg.text_dim,
    }
    (out / CONFIG).write_text(json.dumps({"name": name, "model": cfg.to_dict(), "features": features}, indent=2))
    (out / VOCABULARY).write_text(json.dumps(list(vocabulary), indent=0))
    metrics = card.get("metrics") or {}
    (out / METRICS).write_text(json.dumps(metrics, indent=2, default=str))
    version = weights_version(out / WEIGHTS, name)
    (out / CARD).write_text(_card_text(name, version, model, card, metrics))
    log.info("saved model %s to %s", version, out)
    return version


def _card_text(name: str, version: str, model: SegTagger, card: dict[str, Any], metrics: dict[str, Any]) -> str:
    cfg = model.config
    lines = [
        f"# {name}",
        "",
        f"- version: `{version}`",
        f"- architecture: NeXtVLAD (rgb, audio) + title MLP, context gating, fusion, MoE ({cfg.num_experts} experts)",
        f"- parameters: {model.num_parameters():,}",
        f"- classes: {cfg.num_classes}; embedding: {cfg.embed_dim}-d, L2-normalised",
        f"- features: rgb {cfg.rgb_dim}-d, audio {cfg.audio_dim}-d, title {cfg.text_dim}-d; "
        f"windows of {cfg.window_s} s at {cfg.sample_fps} fps",
    ]
    for key in ("data", "command", "notes"):
        if card.get(key):
            lines.append(f"- {key}: {card[key]}")
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"


def read_config(directory: str | Path) -> tuple[TaggerConfig, dict[str, Any]]:
    """The TaggerConfig and the raw config.json of a model directory."""
    path = Path(directory) / CONFIG
    try:
        raw = json.loads(path.read_text())
        return TaggerConfig.from_dict(raw["model"]), raw
    except FileNotFoundError as exc:
        raise ModelError(_missing(directory, CONFIG)) from exc
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path} is not a valid model config ({exc}); re-save the model with `segtag train`") from exc


def _missing(directory: str | Path, what: str) -> str:
    return (
        f"model directory {directory} has no {what}; train one with "
        f"`segtag train --data FEATURES_DIR --out {directory}` or point SEGTAG_MODEL_DIR at a trained model"
    )


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model directory for inference (eval mode) on ``device``."""
    d = Path(directory)
    if not d.is_dir():
        raise ModelError(_missing(d, "files (it does not exist)"))
    config, raw = read_config(d)
    try:
        vocabulary = json.loads((d / VOCABULARY).read_text())
    except FileNotFoundError as exc:
        raise ModelError(_missing(d, VOCABULARY)) from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"{d / VOCABULARY} is not valid JSON: {exc}") from exc
    if not isinstance(vocabulary, list) or len(vocabulary) != config.num_classes:
        n = len(vocabulary) if isinstance(vocabulary, list) else "?"
        raise ModelError(f"{d}: vocabulary.json has {n} tags but config.json says {config.num_classes} classes")
    if not (d / WEIGHTS).is_file():
        raise ModelError(_missing(d, WEIGHTS))
    model = SegTagger(config)
    try:
        state = load_file(str(d / WEIGHTS))
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # safetensors raises its own error type for corrupt files
        raise ModelError(
            f"{d / WEIGHTS} does not match config.json ({exc}); re-train or restore the directory"
        ) from exc
    model.to(device).eval()
    version = weights_version(d / WEIGHTS, str(raw.get("name", "model")))
    return LoadedModel(model=model, config=config, vocabulary=[str(t) for t in vocabulary], version=version)
