"""``segtag tags``, ``segtag find-tag`` and ``segtag similar`` end to end through the CLI entry
point, over the real Redis and an index snapshot; JSON and tables; unknown ids exit 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from segtag.cli import main
from segtag.services.process import free_port
from segtag.settings import Settings
from tests.test_query import World, build_world, source_of

pytestmark = pytest.mark.integration


@pytest.fixture
def world(live_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    w = build_world(live_settings)
    for name in Settings.env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SEGTAG_REDIS_URL", live_settings.redis_url)
    monkeypatch.setenv("SEGTAG_REDIS_PREFIX", live_settings.redis_prefix)
    monkeypatch.setenv("SEGTAG_INDEX_DIR", live_settings.index_dir)
    yield w
    w.redis.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_tags(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    v = world.corpus[2]
    code, out, _ = run(capsys, "tags", v.video_id, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["video_id"] == v.video_id and [s["segment_id"] for s in data["segments"]] == v.segment_ids
    code, out, _ = run(capsys, "tags", v.video_id)
    assert code == 0
    assert f"video {v.video_id}" in out and f"source{v.source} 0.80" in out and v.segment_ids[2] in out
    code, out, err = run(capsys, "tags", "no-such-video")
    assert code == 1 and out == "" and "unknown video 'no-such-video'" in err


def test_find_tag(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "find-tag", "intro", "--limit", "3", "--offset", "1", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["total"] == 20 and len(data["items"]) == 3 and data["offset"] == 1
    code, out, _ = run(capsys, "find-tag", "intro", "--min-score", "0.885")
    assert code == 0
    assert "tag 'intro': 10 segments with score >= 0.885, showing 1-10" in out
    assert len([line for line in out.splitlines() if "#0" in line]) == 10
    code, _, err = run(capsys, "find-tag", "nothing-like-this")
    assert code == 1 and "unknown tag" in err
    with pytest.raises(SystemExit) as exc:
        main(["find-tag", "intro", "--limit", "0"])
    assert exc.value.code == 2  # argparse rejects it before anything runs


def test_similar(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    v = world.corpus[13]
    sid = v.segment_ids[0]
    code, out, _ = run(capsys, "similar", sid, "--k", "12", "--json")
    assert code == 0
    items = json.loads(out)["items"]
    assert items[0]["segment_id"] == sid and {source_of(s["segment_id"]) for s in items} == {v.source}
    code, out, _ = run(capsys, "similar", sid, "--k", "4", "--tag", "odd", "--exclude-self")
    assert code == 0
    rows = [line for line in out.splitlines()[2:] if line.strip()]
    assert out.startswith(f"segments similar to {sid}:")
    assert len(rows) == 4 and not any(sid in row for row in rows)
    code, _, err = run(capsys, "similar", "nope#1")
    assert code == 1 and "unknown segment 'nope#1'" in err


def test_segtag_api_serves_and_stops_on_sigterm(world: World) -> None:
    """`segtag api` as a process: uvicorn on the given port, the routes answer, SIGTERM stops it."""
    port = free_port()
    env = dict(os.environ)  # the fixture's SEGTAG_* settings
    proc = subprocess.Popen(
        [sys.executable, "-m", "segtag", "api", "--port", str(port)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert health is not None and health.status_code == 200, proc.stderr.read() if proc.poll() is not None else ""
        assert health.json()["index"]["vectors"] == 60
        v = world.corpus[0]
        r = httpx.get(f"http://127.0.0.1:{port}/segments/{v.video_id}%230/similar", params={"k": 2}, timeout=10)
        assert r.status_code == 200 and r.json()["items"][0]["segment_id"] == v.segment_ids[0]
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught (exit by SIGTERM).
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
        assert b"Finished server process" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
