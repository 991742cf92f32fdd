"""Settings: defaults, environment, config file, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from segtag.errors import SettingsError
from segtag.settings import Settings


def test_defaults_are_valid_and_stride_defaults_to_window() -> None:
    s = Settings.load(env={})
    assert s.window_s == 5.0
    assert s.effective_stride_s == 5.0
    assert s.device == "auto"
    assert s.uploads_topic == "segtag.uploads"


def test_environment_overrides_with_types() -> None:
    s = Settings.load(
        env={
            "SEGTAG_WINDOW_S": "2.5",
            "SEGTAG_STRIDE_S": "1",
            "SEGTAG_TOPIC_PARTITIONS": "8",
            "SEGTAG_MEDIA_ROOTS": "/data/a,/data/b",
            "SEGTAG_DEVICE": "cpu",
        }
    )
    assert (s.window_s, s.effective_stride_s, s.topic_partitions) == (2.5, 1.0, 8)
    assert s.media_roots == ("/data/a", "/data/b")
    assert s.device == "cpu"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("SEGTAG_WINDOW_S", "abc"),
        ("SEGTAG_WINDOW_S", "-1"),
        ("SEGTAG_DEVICE", "tpu"),
        ("SEGTAG_KAFKA_PORT", "70000"),
        ("SEGTAG_REDIS_URL", "http://x"),
        ("SEGTAG_BATCH_SIZE", "0"),
        ("SEGTAG_MIN_TAG_SCORE", "1.5"),
    ],
)
def test_bad_value_names_the_variable(var: str, value: str) -> None:
    with pytest.raises(SettingsError, match=var):
        Settings.load(env={var: value})


def test_config_file_then_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "segtag.toml"
    cfg.write_text('window_s = 10.0\nuploads_topic = "from-file"\nmedia_roots = ["/m"]\n')
    s = Settings.load(env={"SEGTAG_CONFIG": str(cfg), "SEGTAG_UPLOADS_TOPIC": "from-env"})
    assert s.window_s == 10.0
    assert s.uploads_topic == "from-env"
    assert s.media_roots == ("/m",)


def test_config_file_unknown_key_and_missing_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("windw_s = 3\n")
    with pytest.raises(SettingsError, match="unknown setting 'windw_s'"):
        Settings.load(env={}, config_file=cfg)
    with pytest.raises(SettingsError, match="does not exist"):
        Settings.load(env={}, config_file=tmp_path / "nope.toml")


def test_settings_are_frozen() -> None:
    s = Settings.load(env={})
    with pytest.raises(AttributeError):
        s.window_s = 3.0  # type: ignore[misc]
    assert s.replace(window_s=3.0).window_s == 3.0
