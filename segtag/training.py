"""``segtag train``: AdamW, warm-up + cosine schedule, per-epoch validation, checkpoints and resume.

Each step trains two views of the same batch of videos:

* the **video** view - all frames of each video (a random crop of at most
  ``max_frames``), supervised by the video labels;
* the **segment** view - one window per video: a labelled segment when the
  video has some (loss only on the classes rated for it), otherwise a random
  window of ``window_s * sample_fps`` frames supervised by the video labels.

The split into train and validation is a hash of the video id, so it is the
same on every run and machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from segtag.checkpoint import save_model
from segtag.datasets.example import Example, collate, random_window
from segtag.evaluation import check_dims, evaluate_examples, open_dataset
from segtag.features.device import resolve_device
from segtag.model import SegTagger, TaggerConfig, preset

log = logging.getLogger(__name__)

STATE = "train_state.pt"


@dataclass
class TrainConfig:
    """Optimisation settings (the model's sizes live in TaggerConfig)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    min_lr_fraction: float = 0.02
    grad_clip: float = 1.0
    max_frames: int = 300  # random crop of long videos for the video view
    val_percent: int = 10
    seed: int = 0
    device: str = "auto"


def available_cores() -> int:
    """CPU cores this process may run on that other processes are not already busy on.

    On a shared machine more torch threads than idle cores is far slower than one
    thread (OpenMP workers spin waiting for each other: 10x measured at load 14 on
    2 cores), so the 1-minute load average is subtracted from the cores we may use.
    """
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    try:
        busy = int(os.getloadavg()[0])
    except OSError:  # load average unavailable
        busy = 0
    return max(1, min(cores, cores - busy + 1))


def is_validation(video_id: str, percent: int) -> bool:
    """Deterministic held-out split: the first 8 hex of sha1(video_id) modulo 100 < percent."""
    return int(hashlib.sha1(video_id.encode()).hexdigest()[:8], 16) % 100 < percent


def read_config_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JSON file with optional ``model`` (TaggerConfig) and ``train`` (TrainConfig) objects.

    Flat files are accepted too: each key goes to whichever dataclass has it.
    """
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    model_keys = {f.name for f in dataclasses.fields(TaggerConfig)}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    model_part = dict(data.pop("model", {}))
    train_part = dict(data.pop("train", {}))
    for key, value in data.items():
        if key in model_keys:
            model_part[key] = value
        elif key in train_keys:
            train_part[key] = value
        else:
            raise ValueError(f"{path}: unknown key {key!r}")
    return model_part, train_part


def lr_factor(step: int, total: int, warmup: int, min_fraction: float) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to ``min_fraction``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_fraction + (1 - min_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def _views(
    batch: Sequence[Example], window_frames: int, max_frames: int, rng: np.random.Generator
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The video view and the segment view of a batch (see the module docstring)."""
    video_slices = [random_window(ex.num_frames, max_frames, rng) for ex in batch]
    video = collate(batch, video_slices)
    seg_slices, seg_labels, seg_weights = [], [], []
    for ex in batch:
        if ex.segments:
            s, e, y, rated = ex.segments[int(rng.integers(len(ex.segments)))]
            seg_slices.append((s, e))
            seg_labels.append(y)
            seg_weights.append(rated.astype(np.float32))
        else:
            seg_slices.append(random_window(ex.num_frames, window_frames, rng))
            seg_labels.append(ex.labels)
            seg_weights.append(np.ones_like(ex.labels))
    segment = collate(batch, seg_slices, seg_labels, seg_weights)
    return video, segment


class Trainer:
    """Owns the model, optimiser, schedule and data of one training run."""

    def __init__(
        self, dataset: Any, out_dir: Path, model_cfg: TaggerConfig, train_cfg: TrainConfig, vocabulary: list[str]
    ) -> None:
        self.dataset, self.out_dir = dataset, out_dir
        self.model_cfg, self.cfg, self.vocabulary = model_cfg, train_cfg, vocabulary
        self.device = resolve_device(train_cfg.device)
        ids = [str(v) for v in dataset.video_ids]
        self.val_idx = [i for i, v in enumerate(ids) if is_validation(v, train_cfg.val_percent)]
        self.train_idx = [i for i, v in enumerate(ids) if not is_validation(v, train_cfg.val_percent)]
        if not self.train_idx:
            raise ValueError("no training videos left after the validation split; lower val_percent")
        torch.manual_seed(train_cfg.seed)
        self.model = SegTagger(model_cfg).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay
        )
        self.steps_per_epoch = math.ceil(len(self.train_idx) / train_cfg.batch_size)
        total = self.steps_per_epoch * train_cfg.epochs
        warmup = max(1, int(total * train_cfg.warmup_fraction))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, total, warmup, train_cfg.min_lr_fraction)
        )
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self._val_cache: list[Example] | None = None

    # --- state -----------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to resume."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "model_config": self.model_cfg.to_dict(),
            "train_config": dataclasses.asdict(self.cfg),
            "vocabulary": self.vocabulary,
            # numpy draws are reseeded from (seed, epoch) each epoch, so the torch state is all that is left
            "rng": {"torch": torch.get_rng_state(), "seed": self.cfg.seed},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state` dict."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.history = list(state.get("history", []))
        torch.set_rng_state(state["rng"]["torch"])

    # --- loop ------------------------------------------------------------
    def _step(self, batch: list[Example], rng: np.random.Generator, window_frames: int) -> float:
        video, segment = _views(batch, window_frames, self.cfg.max_frames, rng)
        use_bf16 = self.device.type == "cuda"
        loss = torch.zeros((), device=self.device)
        for view in (video, segment):
            inputs = {k: v.to(self.device, non_blocking=True) for k, v in view.items()}
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = self.model(**inputs)
            assert out.loss is not None
            loss = loss + out.loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.item())

    def train_epoch(self) -> float:
        """One pass over the training split; returns the mean loss."""
        # Reseeding per epoch makes a resumed run draw the same batches and windows as an uninterrupted one.
        rng = np.random.default_rng([self.cfg.seed, self.epoch])
        torch.manual_seed(self.cfg.seed * 1000 + self.epoch)
        order = rng.permutation(self.train_idx)
        window_frames = max(1, round(self.model_cfg.window_s * self.model_cfg.sample_fps))
        self.model.train()
        losses = []
        bs = self.cfg.batch_size
        bar = tqdm(
            range(0, len(order), bs), desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}", leave=False, unit="batch"
        )
        for start in bar:
            batch = [self.dataset[int(i)] for i in order[start : start + bs]]
            if self.epoch == 0 and start == 0:
                check_dims(self.model, batch[0])
            losses.append(self._step(batch, rng, window_frames))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        return float(np.mean(losses))

    def validate(self) -> dict[str, Any]:
        """Metrics on the held-out split ({} when it is empty)."""
        if not self.val_idx:
            return {}
        if self._val_cache is None:
            self._val_cache = [self.dataset[i] for i in self.val_idx]
        self.model.eval()
        return evaluate_examples(self.model, self._val_cache, self.device)

    def fit(self, stop_after: int | None = None) -> list[dict[str, Any]]:
        """Train the remaining epochs, validating, saving the model and the resume state after each.

        ``stop_after`` ends this run after that epoch (the schedule still spans all
        epochs), e.g. for time-boxed jobs that continue with ``resume``.
        """
        last = self.cfg.epochs if stop_after is None else min(stop_after, self.cfg.epochs)
        while self.epoch < last:
            t0 = time.monotonic()
            loss = self.train_epoch()
            metrics = self.validate()
            self.epoch += 1
            row = {"epoch": self.epoch, "loss": loss, **metrics, "seconds": round(time.monotonic() - t0, 1)}
            self.history.append(row)
            log.info("%s", format_epoch(row))
            self.save(metrics)
        return self.history

    def save(self, metrics: dict[str, Any]) -> None:
        """Write the model directory and train_state.pt."""
        card = {
            "name": self.out_dir.name or "model",
            "data": f"{getattr(self.dataset, 'root', 'data')} ({len(self.train_idx)} train / "
            f"{len(self.val_idx)} validation videos)",
            "command": f"segtag train (epoch {self.epoch}/{self.cfg.epochs}, seed {self.cfg.seed})",
            "metrics": {"epoch": self.epoch, **metrics},
        }
        save_model(self.out_dir, self.model, self.vocabulary, card)
        tmp = self.out_dir / (STATE + ".tmp")
        torch.save(self.state(), tmp)
        tmp.replace(self.out_dir / STATE)


def format_epoch(row: dict[str, Any]) -> str:
    """One human line per epoch."""
    parts = [f"epoch {row['epoch']}", f"loss {row['loss']:.4f}"]
    for key in ("gap", "map", "hit1", "perr", "segment_map"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"{row.get('seconds', 0)} s")
    return "  ".join(parts)


def _vocabulary(dataset: Any) -> list[str]:
    vocab = getattr(dataset, "vocabulary", None)
    if vocab is None:
        raise ValueError("dataset has no vocabulary")
    return list(vocab)


def train(
    data: str | Path,
    out_dir: str | Path,
    preset_name: str = "segtag",
    config_file: str | Path | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    resume: bool = False,
    device: str = "auto",
    overrides: dict[str, Any] | None = None,
    stop_after: int | None = None,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """Train a tagger on a features directory or YouTube-8M TFRecords; returns per-epoch rows.

    The model directory ``out_dir`` is written after every epoch, together with
    ``train_state.pt``; ``resume=True`` continues from it (same data and config).
    ``stop_after`` ends the run early after that epoch; ``threads`` defaults to the
    cores this process may use.
    """
    torch.set_num_threads(threads or available_cores())
    out = Path(out_dir)
    state: dict[str, Any] | None = None
    if resume:
        if not (out / STATE).is_file():
            raise ValueError(f"nothing to resume: {out / STATE} does not exist")
        state = torch.load(out / STATE, map_location="cpu", weights_only=False)
    if state is not None:
        model_cfg = TaggerConfig.from_dict(state["model_config"])
        train_cfg = TrainConfig(**state["train_config"])
        vocabulary = list(state["vocabulary"])
        dataset = open_dataset(data, vocabulary)
    else:
        model_part, train_part = read_config_file(config_file) if config_file else ({}, {})
        train_cfg = TrainConfig(**{"device": device, **train_part})
        dataset = open_dataset(data)
        vocabulary = _vocabulary(dataset)
        first = dataset[0]
        dims = {"rgb_dim": first.rgb.shape[1], "audio_dim": first.audio.shape[1], "text_dim": first.title.shape[0]}
        base = preset(preset_name, len(vocabulary)).to_dict()
        model_cfg = TaggerConfig.from_dict({**base, **dims, **model_part, "num_classes": len(vocabulary)})
    train_cfg = dataclasses.replace(train_cfg, **(overrides or {}))
    if epochs is not None:
        train_cfg.epochs = epochs
    if seed is not None and state is None:
        train_cfg.seed = seed
    trainer = Trainer(dataset, out, model_cfg, train_cfg, vocabulary)
    if state is not None:
        trainer.load_state(state)
        log.info("resuming %s at epoch %d/%d", out, trainer.epoch, train_cfg.epochs)
    log.info(
        "training %s parameters on %s: %d train / %d validation videos, %d classes, device %s",
        f"{trainer.model.num_parameters():,}", data, len(trainer.train_idx), len(trainer.val_idx),
        len(vocabulary), trainer.device,
    )  # fmt: skip
    return trainer.fit(stop_after)
