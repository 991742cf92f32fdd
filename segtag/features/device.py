"""Pick the torch device (encoders, model, training): one rule for every stage."""

from __future__ import annotations

import torch

from segtag.errors import SettingsError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``/``"cuda"``/``"cuda:N"`` as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" or device.startswith("cuda"):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise SettingsError(
                f"device {device!r} (SEGTAG_DEVICE or --device) needs CUDA, which is not available; "
                "use 'cpu' or 'auto'"
            )
        return torch.device(device)
    raise SettingsError(f"device (SEGTAG_DEVICE or --device) must be one of {DEVICES} (or 'cuda:N'), got {device!r}")
