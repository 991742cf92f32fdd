"""Encoders loaded once per test session (loading the real weights takes seconds)."""

from __future__ import annotations

import pytest

from segtag.features.title import TitleEncoder
from segtag.features.visual import VisualEncoder


@pytest.fixture(scope="session")
def visual_encoder() -> VisualEncoder:
    return VisualEncoder(device="cpu", batch_size=8)


@pytest.fixture(scope="session")
def title_encoder() -> TitleEncoder:
    return TitleEncoder(device="cpu")
