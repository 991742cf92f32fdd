"""Index snapshots: one file, written atomically, verified by a checksum.

Layout of ``<index_dir>/segments.snapshot`` (all integers little-endian)::

    b"SEGTAGIX"                 8 bytes magic
    u32 format version          (1)
    u64 meta length, meta       UTF-8 JSON: index state (kind, dim, config, id maps,
                                video versions, tombstones), Kafka positions, time
    u64 faiss length, faiss     faiss.serialize_index of the IndexIDMap2
    sha256                      32 bytes over everything above

The writer (the indexer) writes ``.segments.snapshot.<pid>.tmp`` in the same
directory, fsyncs it, ``os.replace``s it over the snapshot and fsyncs the
directory, so a reader or a restarted writer sees either the old snapshot or the
new one, never half of one. ``positions`` maps ``"topic:partition"`` to the next
offset to read: the snapshot holds exactly the events before those offsets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segtag.errors import SegtagError
from segtag.index import IndexConfig, IndexDataError, SegmentIndex

log = logging.getLogger(__name__)

SNAPSHOT_NAME = "segments.snapshot"
MAGIC = b"SEGTAGIX"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<8sI")
_LEN = struct.Struct("<Q")
_DIGEST = 32


class CorruptSnapshotError(SegtagError):
    """A snapshot file that is truncated, altered or not a snapshot at all."""


@dataclass
class Snapshot:
    """An index with the log positions it includes."""

    index: SegmentIndex
    positions: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> next offset
    created_at: float = 0.0


def snapshot_path(index_dir: str | os.PathLike[str]) -> Path:
    return Path(index_dir) / SNAPSHOT_NAME


def position_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def parse_position_key(key: str) -> tuple[str, int]:
    topic, _, partition = key.rpartition(":")
    return topic, int(partition)


def write_snapshot(index_dir: str | os.PathLike[str], index: SegmentIndex, positions: dict[str, int]) -> Path:
    """Write a snapshot atomically; returns its path once it is durable on disk."""
    directory = Path(index_dir)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "created_at": time.time(),
        "positions": positions,
        "vectors": len(index),
        "index": index.state(),
    }
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode()
    blob = index.faiss_bytes()
    digest = hashlib.sha256()
    final = snapshot_path(directory)
    tmp = directory / f".{SNAPSHOT_NAME}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            head = (_HEAD.pack(MAGIC, FORMAT_VERSION), _LEN.pack(len(meta_bytes)), meta_bytes, _LEN.pack(blob.nbytes))
            for part in head:
                digest.update(part)
                f.write(part)
            view = memoryview(blob.data)  # the FAISS bytes may be a GB: no extra copy
            digest.update(view)
            f.write(view)
            f.write(digest.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(directory)
    log.debug("snapshot written: %d vectors, %s", len(index), final)
    return final


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_snapshot(
    path: str | os.PathLike[str], config: IndexConfig | None = None, overrides: dict[str, Any] | None = None
) -> Snapshot:
    """Load and verify a snapshot file (``config``/``overrides``: see ``SegmentIndex.from_state``).

    Raises FileNotFoundError when there is none and :class:`CorruptSnapshotError`
    when it does not verify.
    """
    data = Path(path).read_bytes()
    if len(data) < _HEAD.size + 2 * _LEN.size + _DIGEST:
        raise CorruptSnapshotError(f"{path}: truncated ({len(data)} bytes)")
    body, stored = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != stored:
        raise CorruptSnapshotError(f"{path}: checksum mismatch")
    magic, version = _HEAD.unpack_from(body, 0)
    if magic != MAGIC or version != FORMAT_VERSION:
        raise CorruptSnapshotError(f"{path}: not a segtag index snapshot (format {version})")
    pos = _HEAD.size
    try:
        (meta_len,) = _LEN.unpack_from(body, pos)
        pos += _LEN.size
        meta: dict[str, Any] = json.loads(body[pos : pos + meta_len])
        pos += meta_len
        (blob_len,) = _LEN.unpack_from(body, pos)
        pos += _LEN.size
        if pos + blob_len != len(body):
            raise CorruptSnapshotError(f"{path}: section lengths do not add up")
        blob = np.frombuffer(body, dtype=np.uint8, count=blob_len, offset=pos)
        index = SegmentIndex.from_state(meta["index"], blob, config, overrides)
    except (struct.error, ValueError, KeyError, TypeError, RuntimeError, IndexDataError) as exc:
        raise CorruptSnapshotError(f"{path}: {exc}") from exc
    positions = {str(k): int(v) for k, v in meta.get("positions", {}).items()}
    return Snapshot(index=index, positions=positions, created_at=float(meta.get("created_at", 0.0)))


def quarantine(path: str | os.PathLike[str]) -> Path | None:
    """Move a corrupt snapshot aside (kept for inspection) so it is not read again."""
    src = Path(path)
    dst = src.with_name(f"{src.name}.corrupt-{int(time.time())}")
    try:
        os.replace(src, dst)
    except FileNotFoundError:
        return None
    return dst
