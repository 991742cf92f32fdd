"""Turn a manifest into a features directory (``segtag extract``) and resolve data dirs.

A *data directory* given to ``segtag eval`` (or ``train``) is either a features
directory (``index.jsonl``) or anything holding a ``manifest.jsonl`` (a ``segtag
synth`` output, or a user's own): the latter is extracted on first use into
``DIR/.features/`` and reused afterwards.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from segtag.errors import SegtagError, VideoError
from segtag.settings import Settings

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
INDEX = "index.jsonl"
VOCABULARY = "vocabulary.json"
FEATURES_SUBDIR = "features"
CACHE_DIR = ".features"


class DatasetError(SegtagError):
    """A data directory or manifest that cannot be used; the message says how to fix it."""


class _Extractor(Protocol):
    def extract(self, uri: str, title: str) -> Any: ...


@dataclass
class ExtractReport:
    """What an extraction run did."""

    out_dir: Path
    total: int = 0
    extracted: int = 0
    cached: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)  # video_id, uri, error_type, error

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for ``--json`` output."""
        return {
            "out_dir": str(self.out_dir),
            "total": self.total,
            "extracted": self.extracted,
            "cached": self.cached,
            "failed": self.failed,
        }


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a manifest.jsonl, checked for the fields extraction needs."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"manifest {path} does not exist; create one with `segtag synth --out DIR` or by hand")
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{n}: not a JSON object: {exc}") from exc
        if not isinstance(rec, dict) or not isinstance(rec.get("video_id"), str) or not isinstance(rec.get("uri"), str):
            raise DatasetError(f"{path}:{n}: every line needs string fields video_id and uri (docs/contracts.md)")
        if rec["video_id"] in seen:
            raise DatasetError(f"{path}:{n}: duplicate video_id {rec['video_id']!r}")
        if "/" in rec["video_id"] or rec["video_id"].startswith("."):
            raise DatasetError(f"{path}:{n}: video_id {rec['video_id']!r} must be usable as a file name")
        seen.add(rec["video_id"])
        records.append(rec)
    return records


def manifest_tags(records: list[dict[str, Any]]) -> list[str]:
    """Every tag named in the manifest (video and segment labels), sorted."""
    tags: set[str] = set()
    for rec in records:
        tags.update(rec.get("labels") or [])
        for seg in rec.get("segments") or []:
            tags.update(seg.get("labels") or [])
    return sorted(tags)


def settings_for_manifest(settings: Settings, manifest: Path) -> Settings:
    """Settings whose media roots also allow file:// URIs under the manifest's directory."""
    root = str(manifest.resolve().parent)
    if root in settings.media_roots:
        return settings
    return settings.replace(media_roots=(*settings.media_roots, root))


def _features_rel(video_id: str) -> str:
    return f"{FEATURES_SUBDIR}/{video_id}.npz"


def _load_extractor(settings: Settings) -> _Extractor:
    # Imported here: loading torch and the encoders is slow, and a fully cached run needs neither.
    from segtag.features.extractor import FeatureExtractor

    return FeatureExtractor.from_settings(settings)


def _pending(records: list[dict[str, Any]], out_dir: Path, report: ExtractReport) -> Iterator[dict[str, Any]]:
    for rec in records:
        if (out_dir / _features_rel(rec["video_id"])).is_file():
            report.cached += 1
        else:
            yield rec


def extract_manifest(
    manifest: str | Path,
    out_dir: str | Path,
    settings: Settings,
    progress: bool = True,
    extractor: _Extractor | None = None,
) -> ExtractReport:
    """Extract features for every manifest line into ``out_dir`` (the features directory format).

    Videos whose ``features/<video_id>.npz`` already exists are skipped (the cache is
    keyed by video id: delete the file to redo one). A bad video (a
    :class:`~segtag.errors.VideoError`) is logged, listed in the report and left out
    of ``index.jsonl``; the others go on. The extractor (EfficientNet and the title
    encoder) is built once, and only when something is left to extract.
    """
    manifest = Path(manifest)
    out_dir = Path(out_dir)
    records = read_manifest(manifest)
    (out_dir / FEATURES_SUBDIR).mkdir(parents=True, exist_ok=True)
    report = ExtractReport(out_dir=out_dir, total=len(records))
    todo = list(_pending(records, out_dir, report))
    if todo:
        settings = settings_for_manifest(settings, manifest)
        extractor = extractor or _load_extractor(settings)
        for rec in tqdm(todo, desc="extract", unit="video", disable=not progress):
            _extract_one(extractor, rec, out_dir, report)
    _write_index(records, out_dir)
    (out_dir / VOCABULARY).write_text(json.dumps(manifest_tags(records), indent=1) + "\n")
    log.info(
        "extract: %d videos, %d extracted, %d cached, %d failed -> %s",
        report.total,
        report.extracted,
        report.cached,
        len(report.failed),
        out_dir,
    )
    return report


def _extract_one(extractor: _Extractor, rec: dict[str, Any], out_dir: Path, report: ExtractReport) -> None:
    target = out_dir / _features_rel(rec["video_id"])
    try:
        features = extractor.extract(rec["uri"], rec.get("title") or "")
    except VideoError as exc:
        log.warning("extract: skipping %s (%s): %s", rec["video_id"], type(exc).__name__, exc)
        report.failed.append(
            {"video_id": rec["video_id"], "uri": rec["uri"], "error_type": type(exc).__name__, "error": str(exc)}
        )
        return
    # Save under a temporary name first so an interrupted run never leaves a truncated cache entry.
    tmp = target.with_name(target.stem + ".part.npz")
    features.save(tmp)
    tmp.replace(target)
    report.extracted += 1


def _write_index(records: list[dict[str, Any]], out_dir: Path) -> None:
    """index.jsonl: the manifest lines (in manifest order) whose features exist."""
    tmp = out_dir / (INDEX + ".part")
    with tmp.open("w") as fh:
        for rec in records:
            rel = _features_rel(rec["video_id"])
            if (out_dir / rel).is_file():
                fh.write(json.dumps({**rec, "features": rel}) + "\n")
    tmp.replace(out_dir / INDEX)


def features_dir_for(data_dir: str | Path, settings: Settings, progress: bool = True) -> Path:
    """The data path to evaluate or train on for ``data_dir``, extracting features first when needed.

    * a directory with ``manifest.jsonl`` and no ``index.jsonl`` (e.g. ``segtag synth``
      output): features are extracted into ``data_dir/.features/`` (cached across calls)
      and that directory is returned;
    * a ``*.jsonl`` manifest file: the same, with ``.features/`` next to it;
    * anything else (a features directory, a directory of YouTube-8M TFRecords, ...) is
      returned unchanged for the caller's reader to open or reject.
    """
    path = Path(data_dir)
    if path.is_dir() and (path / INDEX).is_file():
        return path
    if path.is_dir() and (path / MANIFEST).is_file():
        manifest, cache = path / MANIFEST, path / CACHE_DIR
    elif path.is_file() and path.suffix == ".jsonl":
        manifest, cache = path, path.parent / CACHE_DIR
    else:
        return path
    report = extract_manifest(manifest, cache, settings, progress=progress)
    if report.total and not (report.extracted + report.cached):
        raise DatasetError(f"no video of {manifest} could be read; see the warnings above for each one")
    return cache
