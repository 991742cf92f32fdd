"""One frozen settings object for the whole system.

Built once at an entry point (CLI command, service, test fixture) with
:meth:`Settings.load` and passed down; nothing else reads the environment.
Precedence, lowest first: the defaults below, an optional TOML config file
(``SEGTAG_CONFIG`` or ``--config``; keys are the field names), then
``SEGTAG_<FIELD>`` environment variables. A bad value fails at start-up with a
:class:`~segtag.errors.SettingsError` that names the variable.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from segtag.errors import SettingsError

ENV_PREFIX = "SEGTAG_"
DEVICES = ("auto", "cpu", "cuda")
INDEX_KINDS = ("flat", "ivf", "hnsw")


def _default_state_dir() -> str:
    return str(Path.home() / ".local" / "state" / "segtag")


@dataclass(frozen=True)
class Settings:
    """Every knob of segtag. Field ``x`` is read from ``SEGTAG_X``."""

    # --- Kafka -----------------------------------------------------------
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    uploads_topic: str = "segtag.uploads"
    dead_letter_topic: str = "segtag.deadletter"
    segments_topic: str = "segtag.segments"
    completions_topic: str = "segtag.tagged"
    consumer_group: str = "segtag-tagger"
    indexer_group: str = "segtag-indexer"
    topic_partitions: int = 4
    # --- Redis -----------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "segtag"
    # --- Decoding --------------------------------------------------------
    window_s: float = 5.0
    stride_s: float = 0.0  # 0 means "equal to window_s"
    sample_fps: float = 1.0
    media_roots: tuple[str, ...] = ()
    max_bytes: int = 2 * 1024**3
    max_duration_s: float = 4 * 3600.0
    max_width: int = 3840
    max_height: int = 3840
    http_timeout_s: float = 30.0
    # --- Model -----------------------------------------------------------
    model_dir: str = "models/demo"
    device: str = "auto"
    batch_size: int = 32
    batch_wait_ms: int = 50
    top_k: int = 5
    min_tag_score: float = 0.05  # tags below this are not reported (the best one always is)
    # --- Index -----------------------------------------------------------
    index_dir: str = field(default_factory=lambda: str(Path(_default_state_dir()) / "index"))
    index_kind: str = "flat"
    # --- Services and operations ------------------------------------------
    state_dir: str = field(default_factory=_default_state_dir)
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    redis_port: int = 6379
    metrics_port: int = 0  # 0: no Prometheus endpoint
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_attempts: int = 5
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def effective_stride_s(self) -> float:
        """The stride between window starts (``stride_s`` or, when 0, ``window_s``)."""
        return self.stride_s if self.stride_s > 0 else self.window_s

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        config_file: str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build settings from defaults, a config file, the environment and overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = config_file or env.get(ENV_PREFIX + "CONFIG")
        if path:
            values.update(_read_config_file(Path(path)))
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            if name in env:
                values[f.name] = _parse(name, env[name], f.type)
        values.update(overrides)
        try:
            return cls(**values)
        except TypeError as exc:  # unknown key in the config file
            raise SettingsError(str(exc)) from exc

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def env_names(cls) -> list[str]:
        """Every environment variable the settings read."""
        return [ENV_PREFIX + "CONFIG"] + [ENV_PREFIX + f.name.upper() for f in fields(cls)]


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SettingsError(f"{ENV_PREFIX}CONFIG: config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{ENV_PREFIX}CONFIG: {path} is not valid TOML: {exc}") from exc
    known = {f.name: f.type for f in fields(Settings)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise SettingsError(f"{path}: unknown setting {key!r}; known: {', '.join(sorted(known))}")
        out[key] = _parse(f"{path}:{key}", value, known[key]) if isinstance(value, str) else value
    if "media_roots" in out and isinstance(out["media_roots"], list):
        out["media_roots"] = tuple(str(v) for v in out["media_roots"])
    return out


def _parse(name: str, raw: str, type_: Any) -> Any:
    type_name = type_ if isinstance(type_, str) else getattr(type_, "__name__", str(type_))
    raw = raw.strip()
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if type_name.startswith("tuple"):
            parts = raw.replace(os.pathsep, ",").split(",")
            return tuple(p.strip() for p in parts if p.strip())
    except ValueError as exc:
        raise SettingsError(f"{name}: expected {type_name}, got {raw!r}") from exc
    return raw


def _check(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise SettingsError(f"{ENV_PREFIX}{field_name.upper()}: {message}")


def _validate(s: Settings) -> None:
    _check(s.window_s > 0, "window_s", f"must be > 0 seconds, got {s.window_s}")
    _check(s.stride_s >= 0, "stride_s", f"must be >= 0 (0 = window length), got {s.stride_s}")
    _check(0 < s.sample_fps <= 60, "sample_fps", f"must be in (0, 60], got {s.sample_fps}")
    _check(s.device in DEVICES, "device", f"must be one of {DEVICES}, got {s.device!r}")
    _check(s.index_kind in INDEX_KINDS, "index_kind", f"must be one of {INDEX_KINDS}, got {s.index_kind!r}")
    _check(s.topic_partitions >= 1, "topic_partitions", "must be >= 1")
    _check(s.batch_size >= 1, "batch_size", "must be >= 1")
    _check(s.batch_wait_ms >= 0, "batch_wait_ms", "must be >= 0")
    _check(s.top_k >= 1, "top_k", "must be >= 1")
    _check(0.0 <= s.min_tag_score < 1.0, "min_tag_score", f"must be in [0, 1), got {s.min_tag_score}")
    _check(s.max_bytes > 0, "max_bytes", "must be > 0")
    _check(s.max_duration_s > 0, "max_duration_s", "must be > 0")
    _check(s.max_width > 0 and s.max_height > 0, "max_width", "limits must be > 0")
    _check(s.max_attempts >= 1, "max_attempts", "must be >= 1")
    for port_field in ("kafka_port", "kafka_controller_port", "redis_port", "api_port"):
        port = getattr(s, port_field)
        _check(0 < port < 65536, port_field, f"must be a TCP port, got {port}")
    _check(0 <= s.metrics_port < 65536, "metrics_port", "must be a TCP port or 0")
    _check(bool(s.kafka_bootstrap_servers.strip()), "kafka_bootstrap_servers", "must not be empty")
    _check(
        s.redis_url.startswith(("redis://", "rediss://", "unix://")),
        "redis_url",
        f"must start with redis://, rediss:// or unix://, got {s.redis_url!r}",
    )
    levels = ("DEBUG", "INFO", "WARNING", "ERROR")
    _check(s.log_level.upper() in levels, "log_level", f"must be one of {levels}, got {s.log_level!r}")
