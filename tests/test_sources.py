"""URI resolution: media roots (symlinks, ..) and bounded HTTP downloads against a local server."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from segtag.decode import DecodeLimits, open_video
from segtag.errors import TransientSourceError, UnsupportedSourceError, VideoLimitError, VideoUnreadableError
from segtag.sources import local_file, resolve_local
from segtag.testing.media import make_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=2, fps=10, width=64, height=64)


@pytest.fixture
def roots(tmp_path: Path, clip: Path) -> dict[str, Path]:
    """A media root holding the clip, a secret file outside it, and links of both kinds."""
    root = tmp_path / "media"
    outside = tmp_path / "private"
    root.mkdir()
    outside.mkdir()
    (root / "clip.mp4").write_bytes(clip.read_bytes())
    (outside / "secret.mp4").write_bytes(clip.read_bytes())
    os.symlink(outside / "secret.mp4", root / "escape.mp4")
    os.symlink(root / "clip.mp4", root / "alias.mp4")
    os.symlink(root, tmp_path / "root-link")
    return {"root": root, "outside": outside, "root_link": tmp_path / "root-link"}


def test_inside_root_file_uri_and_plain_path(roots: dict[str, Path]) -> None:
    root = roots["root"]
    assert resolve_local(f"file://{root}/clip.mp4", [str(root)]) == (root / "clip.mp4").resolve()
    assert resolve_local(str(root / "clip.mp4"), [str(root)]) == (root / "clip.mp4").resolve()
    assert resolve_local(f"file://localhost{root}/clip%2Emp4", [str(root)]).name == "clip.mp4"  # URL-quoted
    assert resolve_local(str(root / "alias.mp4"), [str(root)]).name == "clip.mp4"  # symlink staying inside
    assert resolve_local(str(root / "clip.mp4"), [str(roots["root_link"])]).name == "clip.mp4"  # root is a link


def test_symlink_and_dotdot_escapes_are_rejected(roots: dict[str, Path]) -> None:
    root = roots["root"]
    for uri in (str(root / "escape.mp4"), f"file://{root}/../private/secret.mp4", f"{root}/../private/secret.mp4"):
        with pytest.raises(UnsupportedSourceError, match="outside the media roots"):
            resolve_local(uri, [str(root)])


def test_no_media_roots_tells_how_to_configure(roots: dict[str, Path]) -> None:
    with pytest.raises(UnsupportedSourceError, match="SEGTAG_MEDIA_ROOTS"):
        resolve_local(str(roots["root"] / "clip.mp4"), [])
    with (
        pytest.raises(UnsupportedSourceError, match="SEGTAG_MEDIA_ROOTS"),
        open_video(f"file://{roots['root']}/clip.mp4", DecodeLimits()),
    ):
        pass


def test_remote_file_host_and_missing_files(roots: dict[str, Path]) -> None:
    with pytest.raises(UnsupportedSourceError, match="remote host"):
        resolve_local("file://otherhost/media/clip.mp4", [str(roots["root"])])
    with pytest.raises(VideoUnreadableError, match="does not exist"):
        resolve_local(str(roots["root"] / "nope.mp4"), [str(roots["root"])])
    with pytest.raises(VideoUnreadableError, match="not a regular file"):
        resolve_local(str(roots["root"]), [str(roots["root"])])


# --- HTTP ------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    clip_bytes = b""

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        routes = {
            "/clip.mp4": self._clip,
            "/stream.mp4": self._stream_without_length,
            "/slow.mp4": self._slow,
            "/to-file": lambda: self._redirect("file:///etc/passwd"),
            "/to-clip": lambda: self._redirect("/clip.mp4"),
            "/busy": lambda: self.send_error(503),
        }
        routes.get(self.path, lambda: self.send_error(404))()

    def _clip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.clip_bytes)))
        self.end_headers()
        self.wfile.write(self.clip_bytes)

    def _stream_without_length(self) -> None:
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        for _ in range(64):
            self.wfile.write(b"\0" * 4096)

    def _slow(self) -> None:
        time.sleep(3)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
            self._clip()

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that time out on purpose reset the connection; that is the test, not an error.
        pass


@pytest.fixture(scope="module")
def server(clip: Path) -> Iterator[str]:
    handler = type("Handler", (_Handler,), {"clip_bytes": clip.read_bytes()})
    httpd = _QuietServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_download_decodes_and_cleans_up(server: str, clip: Path) -> None:
    limits = DecodeLimits(http_timeout_s=10)
    with open_video(f"{server}/clip.mp4", limits) as video:
        path = Path(video.info.path)
        assert path.read_bytes() == clip.read_bytes()
        assert sum(len(w.timestamps) for w in video.windows(window_s=1.0)) == 2
    assert not path.exists() and not path.parent.exists()  # temporary download removed


def test_http_redirect_within_http_is_followed(server: str) -> None:
    with local_file(f"{server}/to-clip", (), max_bytes=10**7, timeout_s=10) as path:
        assert path.stat().st_size > 0


def test_http_byte_limit(server: str, clip: Path) -> None:
    with (
        pytest.raises(VideoLimitError, match="Content-Length"),
        local_file(f"{server}/clip.mp4", (), max_bytes=100, timeout_s=10),
    ):
        pass
    with (
        pytest.raises(VideoLimitError, match="exceeds the limit"),
        local_file(f"{server}/stream.mp4", (), max_bytes=50_000, timeout_s=10),
    ):
        pass


def test_http_errors(server: str) -> None:
    with pytest.raises(VideoUnreadableError, match="404"), local_file(f"{server}/missing.mp4", (), 10**7, 10):
        pass
    with pytest.raises(TransientSourceError, match="503"), local_file(f"{server}/busy", (), 10**7, 10):
        pass
    with pytest.raises(TransientSourceError, match="timed out"), local_file(f"{server}/slow.mp4", (), 10**7, 0.5):
        pass
    with (
        pytest.raises(UnsupportedSourceError, match="file:// URL refused"),
        local_file(f"{server}/to-file", (), 10**7, 10),
    ):
        pass


def test_connection_refused_is_transient() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        pytest.raises(TransientSourceError, match="cannot connect"),
        local_file(f"http://127.0.0.1:{port}/a.mp4", (), 10**7, 5),
    ):
        pass
