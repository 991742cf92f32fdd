"""Turn a video URI into a local file the decoder can open.

Accepted sources:

* ``file:///abs/path`` and plain absolute paths - only inside one of the
  configured media roots, after symlinks and ``..`` are resolved. With no media
  roots configured every local path is refused: a service that tags URIs from a
  message bus must not read arbitrary files of the host.
* ``http://`` and ``https://`` - downloaded to a temporary file with a byte limit
  and an overall timeout; redirects may only lead to http(s) again.

Everything else raises :class:`~segtag.errors.UnsupportedSourceError`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.client import HTTPMessage
from pathlib import Path
from typing import IO, Any

from segtag.errors import TransientSourceError, UnsupportedSourceError, VideoLimitError, VideoUnreadableError

log = logging.getLogger(__name__)

HTTP_SCHEMES = ("http", "https")
_CHUNK = 1 << 16
# Status codes that say "try again later" rather than "this URI is bad".
_RETRYABLE_STATUS = (408, 425, 429)


def resolve_local(uri: str, media_roots: Sequence[str]) -> Path:
    """Map a ``file://`` URI or absolute path to a real file inside a media root.

    Raises UnsupportedSourceError for paths outside every root (or when no root is
    configured) and VideoUnreadableError for a missing or non-regular file.
    """
    if uri.startswith("file:"):
        parsed = urllib.parse.urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise UnsupportedSourceError(f"file URI with a remote host is not supported: {uri!r}")
        raw = urllib.parse.unquote(parsed.path)
    else:
        raw = uri
    if not os.path.isabs(raw):
        raise UnsupportedSourceError(f"local paths must be absolute: {uri!r}")
    if not media_roots:
        raise UnsupportedSourceError(
            f"local file {raw!r} refused: no media roots are configured; "
            "set SEGTAG_MEDIA_ROOTS to the directories videos may be read from"
        )
    # resolve() follows every symlink and removes "..", so the check below sees
    # the file that would really be opened.
    path = Path(raw).resolve()
    roots = [Path(r).expanduser().resolve() for r in media_roots]
    if not any(path.is_relative_to(root) for root in roots):
        raise UnsupportedSourceError(
            f"local file {raw!r} (resolves to {str(path)!r}) is outside the media roots {[str(r) for r in roots]}"
        )
    if not path.exists():
        raise VideoUnreadableError(f"video file {str(path)!r} does not exist")
    if not path.is_file():
        raise VideoUnreadableError(f"{str(path)!r} is not a regular file")
    return path


class _SameFamilyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s): a redirect to file:// or ftp:// is refused."""

    def _check(self, req: urllib.request.Request, headers: HTTPMessage) -> None:
        location = headers.get("location") or headers.get("uri") or ""
        target = urllib.parse.urljoin(req.full_url, location)
        scheme = urllib.parse.urlparse(target).scheme.lower()
        if scheme not in HTTP_SCHEMES:
            raise UnsupportedSourceError(f"redirect from {req.full_url!r} to a {scheme}:// URL refused: {target!r}")

    def http_error_302(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: HTTPMessage
    ) -> Any:
        # Checked before urllib's own handling, which would report a bad scheme as a plain HTTPError.
        self._check(req, headers)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def download(url: str, dest: Path, max_bytes: int, timeout_s: float) -> int:
    """Stream ``url`` into ``dest``; returns the byte count.

    Raises VideoLimitError past ``max_bytes``, TransientSourceError on timeouts,
    connection failures and 5xx/429 answers, VideoUnreadableError on other
    4xx answers, and UnsupportedSourceError on a redirect to a non-http scheme.
    """
    opener = urllib.request.build_opener(_SameFamilyRedirects)
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": "segtag"})
    try:
        with opener.open(request, timeout=timeout_s) as resp, dest.open("wb") as out:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise VideoLimitError(f"{url}: Content-Length {int(length)} exceeds the limit of {max_bytes} bytes")
            total = 0
            while chunk := resp.read(_CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise VideoLimitError(f"{url}: download exceeds the limit of {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise TransientSourceError(f"{url}: download took longer than {timeout_s:g} s")
                out.write(chunk)
            return total
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code in _RETRYABLE_STATUS:
            raise TransientSourceError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        raise VideoUnreadableError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except TimeoutError as exc:
        raise TransientSourceError(f"{url}: timed out after {timeout_s:g} s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise TransientSourceError(f"{url}: timed out after {timeout_s:g} s") from exc
        raise TransientSourceError(f"{url}: cannot connect: {exc.reason}") from exc
    except OSError as exc:  # connection reset, refused, ...
        raise TransientSourceError(f"{url}: connection failed: {exc}") from exc


@contextmanager
def local_file(uri: str, media_roots: Sequence[str], max_bytes: int, timeout_s: float) -> Iterator[Path]:
    """Yield a local path for ``uri``; a downloaded copy is deleted on exit."""
    if not isinstance(uri, str) or not uri.strip():
        raise UnsupportedSourceError(f"empty or non-string video URI: {uri!r}")
    uri = uri.strip()
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    if scheme in HTTP_SCHEMES:
        tmpdir = tempfile.mkdtemp(prefix="segtag-dl-")
        try:
            suffix = Path(urllib.parse.urlparse(uri).path).suffix[:8]
            dest = Path(tmpdir) / f"video{suffix}"
            size = download(uri, dest, max_bytes, timeout_s)
            log.debug("downloaded %s: %d bytes", uri, size)
            yield dest
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return
    if scheme == "file" or (scheme == "" and uri.startswith("/")):
        path = resolve_local(uri, media_roots)
        size = path.stat().st_size
        if size > max_bytes:
            raise VideoLimitError(f"{str(path)!r} is {size} bytes, over the limit of {max_bytes}")
        yield path
        return
    raise UnsupportedSourceError(
        f"unsupported video URI {uri!r}: use file:// (inside the media roots), an absolute path, or http(s)://"
    )
