"""Model directories: round trip, version strings and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from segtag.checkpoint import load_model, save_model, weights_version
from segtag.errors import ModelError
from segtag.model import SegTagger
from tests.test_model import batch, small_config

VOCAB = [f"tag{i}" for i in range(7)]


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, SegTagger, str]:
    torch.manual_seed(0)
    model = SegTagger(small_config()).eval()
    out = tmp_path / "demo"
    version = save_model(out, model, VOCAB, {"name": "demo", "data": "toy", "metrics": {"gap": 0.5}})
    return out, model, version


def test_round_trip_gives_identical_outputs(saved: tuple[Path, SegTagger, str]) -> None:
    out, model, version = saved
    loaded = load_model(out, "cpu")
    assert loaded.vocabulary == VOCAB
    assert loaded.config == model.config
    assert loaded.version == version
    assert not loaded.model.training
    x = batch(2, 5, model.config)
    a, b = model(**x), loaded.model(**x)
    assert torch.equal(a.probs, b.probs) and torch.equal(a.embedding, b.embedding)


def test_directory_contents(saved: tuple[Path, SegTagger, str]) -> None:
    out, _, version = saved
    assert {p.name for p in out.iterdir()} == {
        "model.safetensors", "config.json", "vocabulary.json", "MODEL_CARD.md", "metrics.json",
    }  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["features"] == {"window_s": 5.0, "sample_fps": 1.0, "rgb_dim": 32, "audio_dim": 8, "text_dim": 12}
    assert json.loads((out / "metrics.json").read_text()) == {"gap": 0.5}
    card = (out / "MODEL_CARD.md").read_text()
    assert version in card and "toy" in card and "| gap | 0.5000 |" in card


def test_version_is_stable_and_follows_the_weights(saved: tuple[Path, SegTagger, str], tmp_path: Path) -> None:
    out, model, version = saved
    assert version.startswith("demo-") and len(version) == len("demo-") + 8
    assert weights_version(out / "model.safetensors", "demo") == version
    # identical weights -> identical version, every time (file bytes must not depend on hash order)
    again = {save_model(tmp_path / f"again{i}" / "demo", model, VOCAB, {"name": "demo"}) for i in range(5)}
    assert again == {version}
    with torch.no_grad():
        model.embed.bias.add_(1.0)
    assert save_model(out, model, VOCAB, {"name": "demo"}) != version


def test_missing_directory_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="segtag train --data"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"no config\.json"):
        load_model(tmp_path / "empty")


def test_inconsistent_directories_are_rejected(saved: tuple[Path, SegTagger, str]) -> None:
    out, _, _ = saved
    (out / "vocabulary.json").write_text(json.dumps(VOCAB[:3]))
    with pytest.raises(ModelError, match=r"vocabulary\.json has 3 tags but config\.json says 7"):
        load_model(out)
    (out / "vocabulary.json").write_text(json.dumps(VOCAB))
    cfg = json.loads((out / "config.json").read_text())
    cfg["model"]["hidden"] = 64
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match=r"does not match config\.json"):
        load_model(out)
    (out / "config.json").write_text("{")
    with pytest.raises(ModelError, match="not a valid model config"):
        load_model(out)


def test_corrupt_weights_and_wrong_vocabulary_size(saved: tuple[Path, SegTagger, str]) -> None:
    out, model, _ = saved
    (out / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match=r"model\.safetensors"):
        load_model(out)
    with pytest.raises(ModelError, match="vocabulary has 2 tags but the model has 7 classes"):
        save_model(out, model, VOCAB[:2])
