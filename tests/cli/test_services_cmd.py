"""`segtag services` from the command line, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segtag.services.process import free_port

pytestmark = pytest.mark.integration


def _segtag(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segtag", *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )


def test_up_status_down_json(tmp_path: Path) -> None:
    kafka_port = free_port()
    env = {
        **os.environ,
        "SEGTAG_STATE_DIR": str(tmp_path),
        "SEGTAG_KAFKA_PORT": str(kafka_port),
        "SEGTAG_KAFKA_CONTROLLER_PORT": str(free_port()),
        "SEGTAG_REDIS_PORT": str(free_port()),
    }
    try:
        up = _segtag(["services", "up", "--json"], env)
        assert up.returncode == 0, up.stderr
        rows = {r["name"]: r for r in json.loads(up.stdout)}
        assert rows["kafka"]["running"] and rows["redis"]["running"]
        assert rows["kafka"]["address"] == f"127.0.0.1:{kafka_port}"
        status = _segtag(["services", "status"], env)
        assert status.returncode == 0 and "running" in status.stdout
    finally:
        down = _segtag(["services", "down", "--json"], env)
    assert down.returncode == 0, down.stderr
    assert {r["action"] for r in json.loads(down.stdout)} == {"stopped"}


def test_bad_setting_is_reported_with_its_name(tmp_path: Path) -> None:
    env = {**os.environ, "SEGTAG_STATE_DIR": str(tmp_path), "SEGTAG_REDIS_PORT": "not-a-port"}
    result = _segtag(["services", "status"], env)
    assert result.returncode == 1
    assert "SEGTAG_REDIS_PORT" in result.stderr
