"""The segtag tagging network: NeXtVLAD per modality, context gating, fusion, MoE.

One file, read top to bottom:

1. ``NeXtVLAD`` turns a masked sequence of frame features (B, T, N) into one
   vector per video (Lin et al. 2018, "NeXtVLAD: An Efficient Neural Network to
   Aggregate Frame-level Features for Large-scale Video Classification").
2. ``ContextGate`` re-weights every component of a vector by a sigmoid computed
   through a squeeze-and-excitation bottleneck ("gated attention").
3. ``ModalityBranch`` = NeXtVLAD -> projection -> gate, for ``rgb`` and ``audio``;
   ``TextBranch`` = MLP -> gate for the 384-d title embedding.
4. ``Fusion`` concatenates the modality vectors with their presence bits,
   projects and gates them.
5. Heads: ``MoEClassifier`` (mixture of logistic experts plus a dummy expert,
   as the YouTube-8M starter code's MoeModel) gives multi-label tag
   probabilities; a linear head gives an L2-normalised embedding.

The same network tags a whole video (all its frames) and a segment (a slice of
frames): :meth:`SegTagger.tag_video` batches the windows of one video.
Every size comes from :class:`TaggerConfig`, which is stored with a checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

PROB_EPS = 1e-7  # probabilities are clamped away from 0 and 1 before logs


@dataclass
class TaggerConfig:
    """Every size of the network. Stored as JSON beside the weights."""

    num_classes: int = 100
    # input feature sizes (0 disables a modality: the YouTube-8M preset has no text)
    rgb_dim: int = 1280
    audio_dim: int = 128
    text_dim: int = 384
    # optional per-frame linear reduction before NeXtVLAD (0 = none)
    rgb_reduce: int = 0
    audio_reduce: int = 0
    # NeXtVLAD
    expansion: int = 2
    groups: int = 8
    rgb_clusters: int = 64
    audio_clusters: int = 16
    # widths
    modality_dim: int = 1024  # each modality vector after projection
    text_hidden: int = 512
    hidden: int = 1024  # fused representation
    gating_reduction: int = 8
    num_experts: int = 2
    embed_dim: int = 256
    # regularisation
    dropout: float = 0.2
    modality_dropout: float = 0.2  # per example and modality, during training only
    # the features the model was trained on (used by callers to cut windows)
    window_s: float = 5.0
    sample_fps: float = 1.0

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.rgb_dim <= 0 and self.audio_dim <= 0 and self.text_dim <= 0:
            raise ValueError("at least one of rgb_dim, audio_dim, text_dim must be > 0")
        for name, dim, reduce in (("rgb", self.rgb_dim, self.rgb_reduce), ("audio", self.audio_dim, self.audio_reduce)):
            width = (reduce or dim) * self.expansion
            if dim > 0 and width % self.groups:
                raise ValueError(
                    f"{name}: expansion * input width ({width}) must be divisible by groups ({self.groups})"
                )
        if self.gating_reduction < 1:
            raise ValueError(f"gating_reduction must be >= 1, got {self.gating_reduction}")
        if self.num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {self.num_experts}")

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaggerConfig:
        """Build a config from a dict, rejecting unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TaggerConfig keys: {', '.join(unknown)}")
        return cls(**data)


def preset(name: str, num_classes: int | None = None) -> TaggerConfig:
    """A named configuration: ``yt8m`` (paper sizes), ``segtag`` (our features), ``demo`` (small)."""
    if name == "yt8m":
        # YouTube-8M frame features: 1024-d rgb, 128-d audio, 3862 classes, no title.
        # NeXtVLAD paper sizes: expansion 2, groups 8, 128 clusters, hidden 2048, SE reduction 8.
        return TaggerConfig(
            num_classes=num_classes or 3862, rgb_dim=1024, audio_dim=128, text_dim=0,
            expansion=2, groups=8, rgb_clusters=128, audio_clusters=16,
            modality_dim=768, hidden=2048, gating_reduction=8, num_experts=2,
            dropout=0.5, modality_dropout=0.0,
        )  # fmt: skip
    if name == "segtag":
        return TaggerConfig(
            num_classes=num_classes or 100, rgb_reduce=512, expansion=2, groups=8, rgb_clusters=64,
            audio_clusters=16, modality_dim=1024, text_hidden=512, hidden=1024, num_experts=2,
        )  # fmt: skip
    if name == "demo":
        # Must stay <= 20 MB in fp32: reduce the 1280-d frames to 256 before NeXtVLAD.
        return TaggerConfig(
            num_classes=num_classes or 100, rgb_reduce=256, expansion=2, groups=8, rgb_clusters=32,
            audio_clusters=16, modality_dim=384, text_hidden=256, hidden=512, num_experts=2,
            embed_dim=256, dropout=0.2,
        )  # fmt: skip
    raise ValueError(f"unknown preset {name!r}; choose yt8m, segtag or demo")


@dataclass
class TaggerOutput:
    """What :meth:`SegTagger.forward` returns."""

    logits: torch.Tensor  # (B, C) logit of probs (the MoE mixes probabilities, not logits)
    probs: torch.Tensor  # (B, C) independent per-class probabilities
    embedding: torch.Tensor  # (B, E) L2-normalised
    loss: torch.Tensor | None  # scalar when labels were given


class ContextGate(nn.Module):
    """Gated attention: y = x * sigmoid(W2 relu(LN(W1 x))) through a d/r bottleneck.

    LayerNorm rather than BatchNorm in the bottleneck: the streaming tagger runs
    batches of one, and modality dropout puts many zero vectors in a training
    batch, which would skew BatchNorm's running statistics.
    """

    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        inner = max(1, dim // reduction)
        self.squeeze = nn.Linear(dim, inner)
        self.norm = nn.LayerNorm(inner)
        self.excite = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, D), each component scaled by its gate in (0, 1)."""
        gate = torch.sigmoid(self.excite(F.relu(self.norm(self.squeeze(x)))))  # (B, D)
        return x * gate


class NeXtVLAD(nn.Module):
    """NeXtVLAD aggregation of a masked frame sequence.

    Each frame x (N) is expanded to lambda*N, split into G groups of
    n = lambda*N/G; every group is softly assigned to K clusters and weighted by
    a per-group sigmoid attention. The residuals to the cluster centres are
    summed over time and groups, L2-normalised per cluster (intra-normalisation)
    and flattened to K*n. Masked frames get zero attention, so they add nothing,
    and a fully masked sequence aggregates to exactly zero.
    """

    def __init__(self, dim: int, expansion: int, groups: int, clusters: int) -> None:
        super().__init__()
        self.groups, self.clusters = groups, clusters
        self.group_dim = dim * expansion // groups
        self.expand = nn.Linear(dim, dim * expansion)
        self.attention = nn.Linear(dim * expansion, groups)
        self.assign = nn.Linear(dim * expansion, groups * clusters)
        self.centers = nn.Parameter(torch.empty(clusters, self.group_dim))
        nn.init.normal_(self.centers, std=0.01)
        self.out_dim = clusters * self.group_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Frames (B, T, N) and mask (B, T) -> descriptor (B, K*n)."""
        B, T, _ = x.shape
        G, K, n = self.groups, self.clusters, self.group_dim
        m = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
        x = self.expand(x * m)  # (B, T, lambda*N)
        att = torch.sigmoid(self.attention(x)) * m  # (B, T, G)
        assign = F.softmax(self.assign(x).view(B, T, G, K), dim=-1)  # (B, T, G, K)
        assign = (assign * att.unsqueeze(-1)).reshape(B, T * G, K)  # (B, T*G, K)
        xg = x.reshape(B, T * G, n)  # (B, T*G, n)
        vlad = assign.transpose(1, 2) @ xg  # (B, K, n)
        vlad = vlad - assign.sum(dim=1).unsqueeze(-1) * self.centers  # (B, K, n)
        vlad = F.normalize(vlad, dim=-1)  # intra-normalisation; zero stays zero
        return vlad.reshape(B, K * n)  # (B, K*n)


class ModalityBranch(nn.Module):
    """Frames (B, T, N) + mask -> optional reduction -> NeXtVLAD -> projection -> gate."""

    def __init__(self, dim: int, reduce: int, clusters: int, cfg: TaggerConfig) -> None:
        super().__init__()
        # LayerNorm on the raw frame features: extractors differ in scale by orders of magnitude
        self.in_norm = nn.LayerNorm(dim)
        self.reduce = nn.Linear(dim, reduce) if reduce else nn.Identity()
        self.vlad = NeXtVLAD(reduce or dim, cfg.expansion, cfg.groups, clusters)
        self.drop = nn.Dropout(cfg.dropout)
        self.proj = nn.Linear(self.vlad.out_dim, cfg.modality_dim)
        self.norm = nn.LayerNorm(cfg.modality_dim)
        self.gate = ContextGate(cfg.modality_dim, cfg.gating_reduction)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Frames (B, T, N) and mask (B, T) -> modality vector (B, modality_dim)."""
        x = self.reduce(self.in_norm(x))  # (B, T, N')
        v = self.vlad(x, mask)  # (B, K*n)
        return self.gate(self.norm(self.proj(self.drop(v))))  # (B, modality_dim)


class TextBranch(nn.Module):
    """Title sentence embedding (B, Dt) -> MLP -> gate."""

    def __init__(self, cfg: TaggerConfig) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(cfg.text_dim, cfg.text_hidden),
            nn.LayerNorm(cfg.text_hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.text_hidden, cfg.modality_dim),
            nn.LayerNorm(cfg.modality_dim),
        )
        self.gate = ContextGate(cfg.modality_dim, cfg.gating_reduction)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """Title embedding (B, Dt) -> (B, modality_dim)."""
        return self.gate(self.mlp(text))  # (B, modality_dim)


class Fusion(nn.Module):
    """Concatenate modality vectors (zeroed when missing) and presence bits, project, gate."""

    def __init__(self, num_modalities: int, cfg: TaggerConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(num_modalities * (cfg.modality_dim + 1), cfg.hidden)
        self.norm = nn.LayerNorm(cfg.hidden)
        self.gate = ContextGate(cfg.hidden, cfg.gating_reduction)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, vectors: list[torch.Tensor], present: list[torch.Tensor]) -> torch.Tensor:
        """M modality vectors (B, D) and presence bits (B,) -> fused (B, hidden)."""
        bits = [p.to(v.dtype).unsqueeze(-1) for v, p in zip(vectors, present, strict=True)]  # M x (B, 1)
        x = torch.cat([v * b for v, b in zip(vectors, bits, strict=True)] + bits, dim=-1)  # (B, M*(D+1))
        return self.drop(self.gate(F.relu(self.norm(self.proj(x)))))  # (B, hidden)


class MoEClassifier(nn.Module):
    """Mixture of logistic experts per class, gated by a softmax over experts + a dummy expert.

    p(c) = sum_e softmax(g)_e * sigmoid(w_e . h); the dummy expert always predicts
    0, which lets the gate say "none of the experts" cheaply.
    """

    def __init__(self, dim: int, num_classes: int, num_experts: int) -> None:
        super().__init__()
        self.num_classes, self.num_experts = num_classes, num_experts
        self.gates = nn.Linear(dim, num_classes * (num_experts + 1))
        self.experts = nn.Linear(dim, num_classes * num_experts)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Fused (B, hidden) -> class probabilities (B, C)."""
        B, C, E = h.shape[0], self.num_classes, self.num_experts
        gates = F.softmax(self.gates(h).view(B, C, E + 1), dim=-1)  # (B, C, E+1)
        experts = torch.sigmoid(self.experts(h).view(B, C, E))  # (B, C, E)
        return (gates[..., :E] * experts).sum(dim=-1)  # (B, C)


class SegTagger(nn.Module):
    """The full tagger; see the module docstring for the architecture."""

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.rgb = ModalityBranch(cfg.rgb_dim, cfg.rgb_reduce, cfg.rgb_clusters, cfg) if cfg.rgb_dim > 0 else None
        self.audio = (
            ModalityBranch(cfg.audio_dim, cfg.audio_reduce, cfg.audio_clusters, cfg) if cfg.audio_dim > 0 else None
        )
        self.text = TextBranch(cfg) if cfg.text_dim > 0 else None
        num_modalities = sum(b is not None for b in (self.rgb, self.audio, self.text))
        self.fusion = Fusion(num_modalities, cfg)
        self.classifier = MoEClassifier(cfg.hidden, cfg.num_classes, cfg.num_experts)
        self.embed = nn.Linear(cfg.hidden, cfg.embed_dim)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _modality_dropout(self, masks: list[torch.Tensor]) -> list[torch.Tensor]:
        """Drop whole modalities per example at random, always keeping at least one present."""
        p = self.config.modality_dropout
        if not self.training or p <= 0 or len(masks) < 2:
            return masks
        present = torch.stack([m.reshape(m.shape[0], -1).any(dim=1) for m in masks], dim=1)  # (B, M)
        keep = torch.rand(present.shape, device=present.device) >= p  # (B, M)
        none_left = ~(keep & present).any(dim=1)  # (B,)
        keep = keep | none_left.unsqueeze(1)  # fall back to the original masks for those rows
        # keep[:, i] broadcast over the mask's time axis: (B,) -> (B, 1) for frame masks, (B,) for text
        return [m & keep[:, i].view(-1, *([1] * (m.dim() - 1))) for i, m in enumerate(masks)]

    def forward(
        self,
        rgb: torch.Tensor,
        rgb_mask: torch.Tensor,
        audio: torch.Tensor,
        audio_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        label_weights: torch.Tensor | None = None,
    ) -> TaggerOutput:
        """Tag a batch. Shapes: rgb (B,T,Dr), audio (B,T,Da), masks (B,T) bool, text (B,Dt), text_mask (B,).

        ``labels`` (B, C) in {0, 1} gives a loss: binary cross-entropy summed over
        classes (weighted by ``label_weights`` (B, C) if given, e.g. 0 for
        unrated segment classes) and averaged over the batch.
        """
        masks = self._modality_dropout([rgb_mask.bool(), audio_mask.bool(), text_mask.bool()])
        rgb_mask, audio_mask, text_mask = masks
        vectors: list[torch.Tensor] = []
        present: list[torch.Tensor] = []
        if self.rgb is not None:
            vectors.append(self.rgb(rgb, rgb_mask))
            present.append(rgb_mask.any(dim=1))
        if self.audio is not None:
            vectors.append(self.audio(audio, audio_mask))
            present.append(audio_mask.any(dim=1))
        if self.text is not None:
            vectors.append(self.text(text))
            present.append(text_mask)
        h = self.fusion(vectors, present)  # (B, hidden)
        probs = self.classifier(h).float().clamp(PROB_EPS, 1 - PROB_EPS)  # (B, C)
        embedding = F.normalize(self.embed(h).float(), dim=-1)  # (B, E)
        loss = None if labels is None else bce_loss(probs, labels, label_weights)
        return TaggerOutput(logits=torch.logit(probs), probs=probs, embedding=embedding, loss=loss)

    @torch.no_grad()
    def tag_video(
        self,
        rgb: np.ndarray,
        audio: np.ndarray,
        audio_mask: np.ndarray,
        title: np.ndarray,
        title_mask: bool,
        windows: Sequence[tuple[int, int]],
        device: str | torch.device = "cpu",
        max_batch: int = 256,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Video- and segment-level outputs for one video's feature arrays.

        ``windows`` are (first_frame, end_frame) slices of the T axis (end exclusive).
        Returns video_probs (C,), segment_probs (W, C), segment_embeddings (W, E),
        video_embedding (E,) as float32 numpy arrays.
        """
        was_training = self.training
        self.eval()
        try:
            whole = [(0, int(rgb.shape[0]))]
            video_probs, video_emb = self._tag_slices(rgb, audio, audio_mask, title, title_mask, whole, device)
            seg_probs = np.zeros((0, self.config.num_classes), np.float32)
            seg_emb = np.zeros((0, self.config.embed_dim), np.float32)
            chunks = [list(windows[i : i + max_batch]) for i in range(0, len(windows), max_batch)]
            outs = [self._tag_slices(rgb, audio, audio_mask, title, title_mask, c, device) for c in chunks]
            if outs:
                seg_probs = np.concatenate([o[0] for o in outs])
                seg_emb = np.concatenate([o[1] for o in outs])
            return video_probs[0], seg_probs, seg_emb, video_emb[0]
        finally:
            self.train(was_training)

    def _tag_slices(
        self,
        rgb: np.ndarray,
        audio: np.ndarray,
        audio_mask: np.ndarray,
        title: np.ndarray,
        title_mask: bool,
        slices: Sequence[tuple[int, int]],
        device: str | torch.device,
    ) -> tuple[np.ndarray, np.ndarray]:
        batch = slice_batch(rgb, audio, audio_mask, title, title_mask, slices)
        out = self(**{k: v.to(device) for k, v in batch.items()})
        return out.probs.cpu().numpy(), out.embedding.cpu().numpy()


def slice_batch(
    rgb: np.ndarray,
    audio: np.ndarray,
    audio_mask: np.ndarray,
    title: np.ndarray,
    title_mask: bool,
    slices: Sequence[tuple[int, int]],
) -> dict[str, torch.Tensor]:
    """A padded (W, T_w) batch of frame slices of one video, ready for ``SegTagger.forward``."""
    W = len(slices)
    T = max(1, max((max(0, e - s) for s, e in slices), default=1))
    rgb_b = np.zeros((W, T, rgb.shape[1]), np.float32)  # (W, T_w, Dr)
    audio_b = np.zeros((W, T, audio.shape[1]), np.float32)  # (W, T_w, Da)
    rgb_m = np.zeros((W, T), bool)
    audio_m = np.zeros((W, T), bool)
    for i, (s, e) in enumerate(slices):
        n = max(0, e - s)
        rgb_b[i, :n] = rgb[s:e]
        audio_b[i, :n] = audio[s:e]
        rgb_m[i, :n] = True
        audio_m[i, :n] = audio_mask[s:e]
    return {
        "rgb": torch.from_numpy(rgb_b),
        "rgb_mask": torch.from_numpy(rgb_m),
        "audio": torch.from_numpy(audio_b),
        "audio_mask": torch.from_numpy(audio_m),
        "text": torch.from_numpy(np.repeat(title.reshape(1, -1).astype(np.float32), W, axis=0)),  # (W, Dt)
        "text_mask": torch.full((W,), bool(title_mask)),
    }


def bce_loss(probs: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy on probabilities, summed over classes, mean over the batch."""
    p = probs.float().clamp(PROB_EPS, 1 - PROB_EPS)
    y = labels.float()
    per = -(y * torch.log(p) + (1 - y) * torch.log1p(-p))  # (B, C)
    if weights is not None:
        per = per * weights.float()
    return per.sum(dim=1).mean()


def fp32_megabytes(model: nn.Module) -> float:
    """Size of the weights in fp32, in MB (10^6 bytes)."""
    return sum(p.numel() for p in model.parameters()) * 4 / 1e6


def describe(config: TaggerConfig) -> dict[str, Any]:
    """Parameter count and size of a configuration, per part."""
    model = SegTagger(config)  # the meta device would save memory but imports half of torch (seconds)
    parts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    total = model.num_parameters()
    return {"parameters": total, "fp32_mb": round(total * 4 / 1e6, 2), "parts": parts}
