"""End-to-end training on small synthetic features: learning, resume, CLI, TFRecords."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from segtag.checkpoint import load_model
from segtag.cli import main
from segtag.datasets.features_dir import write_features_dir
from segtag.datasets.yt8m import quantize, write_sequence_examples
from segtag.evaluation import evaluate
from segtag.metrics import gap
from segtag.training import available_cores, is_validation, lr_factor, read_config_file, train

TAGS = ["a", "b", "c", "d", "e"]
RGB, AUDIO, TEXT = 48, 16, 24
SMALL = {
    "model": {
        "rgb_reduce": 0, "expansion": 2, "groups": 4, "rgb_clusters": 8, "audio_clusters": 4,
        "modality_dim": 32, "text_hidden": 16, "hidden": 48, "embed_dim": 16, "dropout": 0.0,
    },
    "train": {"batch_size": 8, "lr": 3e-3, "val_percent": 25},
}  # fmt: skip
# one thread: the test machines are shared, and OpenMP spinning on busy cores is slower than one thread
CPU1: dict[str, Any] = {"device": "cpu", "threads": 1}


def make_data(root: Path, n: int = 40, seed: int = 0) -> Path:
    """Videos whose frames carry the sum of their classes' mean vectors (plus noise): learnable."""
    rng = np.random.default_rng(seed)
    means_rgb = rng.normal(0, 1.5, (len(TAGS), RGB))
    means_audio = rng.normal(0, 1.5, (len(TAGS), AUDIO))
    items: list[tuple[dict[str, Any], dict[str, np.ndarray]]] = []
    for v in range(n):
        classes = rng.choice(len(TAGS), size=int(rng.integers(1, 3)), replace=False)
        T = int(rng.integers(6, 14))
        arrays = {
            "rgb": (rng.normal(size=(T, RGB)) + means_rgb[classes].sum(0)).astype(np.float32),
            "audio": (rng.normal(size=(T, AUDIO)) + means_audio[classes].sum(0)).astype(np.float32),
            "audio_mask": np.ones(T, bool),
            "title": rng.normal(size=TEXT).astype(np.float32),
            "title_mask": np.asarray(v % 2 == 0),
            "timestamps": np.arange(T, dtype=np.float64),
        }
        tags = [TAGS[c] for c in classes]
        segments = [{"start": 0.0, "end": 5.0, "labels": tags}] if v % 2 else []
        items.append(
            ({"video_id": f"vid{v:03d}", "uri": "u", "title": "", "labels": tags, "segments": segments}, arrays)
        )
    return write_features_dir(root, items)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("train") / "feats")


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "small.json"
    path.write_text(json.dumps(SMALL))
    return path


@pytest.fixture(scope="module")
def two_epochs(data: Path, config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("runs") / "full"
    rows = train(data, out, preset_name="demo", config_file=config_file, epochs=2, seed=1, **CPU1)
    return out, rows


def test_loss_decreases_and_gap_beats_chance(data: Path, two_epochs: tuple[Path, list]) -> None:
    out, rows = two_epochs
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["loss"] < rows[0]["loss"]
    result = evaluate(out, data, "cpu")
    val = [v for v in (f"vid{i:03d}" for i in range(40)) if is_validation(v, 25)]
    assert result["num_videos"] == 40 and result["num_segments"] == 20
    # chance: GAP of random scores for the same labels, averaged over draws
    labels = np.array([[t in json.loads(line)["labels"] for t in TAGS] for line in (data / "index.jsonl").open()])
    rng = np.random.default_rng(0)
    chance = float(np.mean([gap(rng.random(labels.shape), labels) for _ in range(20)]))
    assert result["gap"] > chance + 0.2, (result, chance)
    assert rows[-1]["gap"] > chance + 0.1 and len(val) >= 5
    assert result["segment_map"] is not None and result["segment_map"] > 0.5


def test_checkpoint_and_card_written_each_epoch(two_epochs: tuple[Path, list]) -> None:
    out, _ = two_epochs
    loaded = load_model(out)
    assert loaded.vocabulary == TAGS
    assert (loaded.config.rgb_dim, loaded.config.audio_dim, loaded.config.text_dim) == (RGB, AUDIO, TEXT)
    assert loaded.config.hidden == 48  # from the config file, over the preset
    assert json.loads((out / "metrics.json").read_text())["epoch"] == 2
    state = torch.load(out / "train_state.pt", weights_only=False)
    assert state["epoch"] == 2 and {"optimizer", "scheduler", "rng"} <= set(state)


def test_resume_continues_exactly(data: Path, config_file: Path, tmp_path: Path, two_epochs: tuple[Path, list]) -> None:
    full_dir, full_rows = two_epochs
    out = tmp_path / "resumed"
    # an interrupted run: the schedule spans 2 epochs, the process stops after 1
    first = train(data, out, preset_name="demo", config_file=config_file, epochs=2, seed=1, stop_after=1, **CPU1)
    assert len(first) == 1
    rows = train(data, out, resume=True, **CPU1)
    assert [r["epoch"] for r in rows] == [1, 2]
    a = load_model(full_dir).model.state_dict()
    b = load_model(out).model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    assert rows[1]["loss"] == pytest.approx(full_rows[1]["loss"], rel=1e-5)


def test_resume_without_state_fails_clearly(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to resume"):
        train(data, tmp_path / "none", resume=True)


def test_cli_train_and_eval(data: Path, config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    argv = ["train", "--data", str(data), "--out", str(out), "--preset", "demo", "--config", str(config_file)]
    assert main([*argv, "--epochs", "1", "--device", "cpu", "--threads", "1"]) == 0
    assert "epoch 1" in capsys.readouterr().out
    assert main(["eval", "--model", str(out), "--data", str(data), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"gap", "map", "hit1", "perr", "segment_map", "num_videos"} <= set(result)
    assert result["model_version"].startswith("demo-")
    assert main(["model-info", "--model", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"] > 0
    assert main(["eval", "--model", str(tmp_path / "missing"), "--data", str(data)]) == 1
    assert "segtag train" in capsys.readouterr().err


def test_cli_model_info_yt8m(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model-info", "--preset", "yt8m", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["under_80m"] and info["parameters"] < 80_000_000
    assert "80M" in info["nextvlad_published"]


def test_train_on_youtube8m_tfrecords(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    means = rng.normal(0, 0.6, (3, 1024))
    examples = []
    for v in range(12):
        c = v % 3
        rgb = quantize(np.clip(rng.normal(0, 0.3, (8, 1024)) + means[c], -1.9, 1.9))
        ex: dict[str, Any] = {"id": f"y{v}", "labels": [c], "rgb": rgb, "audio": rng.integers(0, 256, (8, 128))}
        if v % 2:
            ex.update(segment_start_times=[0], segment_end_times=[5], segment_labels=[c], segment_scores=[1.0])
        examples.append(ex)
    data = tmp_path / "yt8m"
    data.mkdir()
    write_sequence_examples(data / "train0.tfrecord", examples[:6])
    write_sequence_examples(data / "train1.tfrecord", examples[6:])
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({**SMALL, "train": {"batch_size": 4, "val_percent": 30}}))
    rows = train(data, tmp_path / "m", config_file=cfg, epochs=1, **CPU1)
    assert math.isfinite(rows[0]["loss"])
    loaded = load_model(tmp_path / "m")
    assert loaded.vocabulary == ["0", "1", "2"] and loaded.config.text_dim == 0 and loaded.config.rgb_dim == 1024
    result = evaluate(tmp_path / "m", data, "cpu")
    assert result["num_videos"] == 12 and result["num_segments"] == 6


def test_config_file_and_schedule_helpers(tmp_path: Path) -> None:
    path = tmp_path / "flat.json"
    path.write_text(json.dumps({"hidden": 64, "epochs": 3}))
    assert read_config_file(path) == ({"hidden": 64}, {"epochs": 3})
    path.write_text(json.dumps({"bogus": 1}))
    with pytest.raises(ValueError, match="unknown key 'bogus'"):
        read_config_file(path)
    factors = [lr_factor(s, 100, 10, 0.0) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[99] < 0.01
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert is_validation("x", 100) and not is_validation("x", 0)
    assert is_validation("vid007", 25) == is_validation("vid007", 25)


def test_available_cores_leaves_busy_cores_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert available_cores() == 4
    monkeypatch.setattr(os, "getloadavg", lambda: (2.5, 0.0, 0.0))
    assert available_cores() == 3
    monkeypatch.setattr(os, "getloadavg", lambda: (14.0, 0.0, 0.0))
    assert available_cores() == 1
