"""The FAISS segment index: one embedding per segment, searched by inner product.

Embeddings are L2-normalised on the way in, so inner product is cosine similarity
and scores lie in [-1, 1]. Every vector carries an int64 id that this module hands
out; the index keeps ``segment_id <-> id`` and ``video_id -> (version, ids)`` so a
video can be replaced as a whole (upsert by video) and so a stale event can be
recognised by its version.

Three kinds (``Settings.index_kind``), with different deletion costs:

* ``flat`` - ``IndexIDMap2(IndexFlatIP)``: exact. ``remove_ids`` compacts the
  vector array, one O(n) pass per call (we remove a whole video per call).
* ``ivf`` - ``IndexIVFFlat`` with our ids in its lists: approximate, ``nprobe`` of ``nlist``
  lists scanned. Until ``train_min`` vectors exist the index stays flat (k-means
  on a handful of vectors gives useless lists); it is trained once on the live
  vectors when the threshold is crossed. ``remove_ids`` costs
  O(removed) per call: a hashtable direct map (id -> list, slot) finds each entry,
  which is swapped with its list's last one. Centroids stay as trained.
* ``hnsw`` - ``IndexIDMap2(IndexHNSWFlat)``: approximate graph search. HNSW cannot
  remove a node, so deletions are tombstones: the id leaves the mappings and is
  filtered out of every search with an ``IDSelectorNot``; the dead nodes still
  cost memory and search time (the graph walks through them) until
  :meth:`SegmentIndex.maybe_rebuild` rebuilds the graph from the live vectors
  once the dead fraction passes ``rebuild_dead_fraction`` (an O(n log n) rebuild).

A GPU copy (:meth:`SegmentIndex.to_gpu`) is used for unfiltered flat/IVF searches
when faiss was built with GPU support and a GPU is visible; the writer always
mutates the CPU index.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import faiss as _faiss
import numpy as np

from segtag.errors import SegtagError
from segtag.settings import INDEX_KINDS, Settings

log = logging.getLogger(__name__)

# faiss ships partial type stubs that lag its SWIG API (SearchParametersHNSW, sel=...).
faiss: Any = _faiss

# Below this many allowed ids a filtered approximate search that came back short is
# redone exactly over the allowed vectors; above it the approximate answer stands.
EXACT_FILTER_MAX = 50_000


class IndexDataError(SegtagError):
    """A vector or parameter the index cannot accept (bad dimension, unknown kind)."""


@dataclass(frozen=True)
class IndexConfig:
    """How the index is built and searched (kind from settings, the rest tunables)."""

    kind: str = "flat"
    nlist: int = 4096  # ~4*sqrt(n) for 1M vectors; below 39*nlist vectors the index stays flat
    nprobe: int = 32
    train_min: int = 0  # 0: 39 * nlist, faiss's minimum for a stable k-means
    hnsw_m: int = 32
    ef_construction: int = 100  # 40 (faiss default) gave recall@10 0.91 at 1M in the benchmark
    ef_search: int = 128
    rebuild_dead_fraction: float = 0.2
    rebuild_min_dead: int = 1000
    use_gpu: bool = True

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise IndexDataError(f"index kind must be one of {INDEX_KINDS}, got {self.kind!r}")
        if self.nlist < 1 or self.nprobe < 1 or self.hnsw_m < 2 or self.ef_search < 1:
            raise IndexDataError("nlist, nprobe, ef_search must be >= 1 and hnsw_m >= 2")

    @property
    def effective_train_min(self) -> int:
        """Vectors needed before an IVF index is trained."""
        return self.train_min or 39 * self.nlist

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> IndexConfig:
        """The config for ``settings.index_kind`` with optional tunable overrides."""
        return cls(kind=settings.index_kind, **{k: v for k, v in overrides.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@dataclass
class VideoEntry:
    """What the index holds of one video."""

    version: int
    ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Hit:
    """One search result."""

    segment_id: str
    score: float


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Float32, C-contiguous, rows scaled to unit length (zero rows stay zero)."""
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if x.ndim == 1:
        x = x.reshape(1, -1)
    x = x.copy()
    faiss.normalize_L2(x)
    return x


def gpu_available() -> bool:
    """True when this faiss build has GPU support and sees at least one GPU."""
    get = getattr(faiss, "get_num_gpus", None)
    return bool(get and get() > 0)


class SegmentIndex:
    """Segment embeddings in FAISS with the id mappings around them.

    Not thread-safe for writes: one writer (the indexer) mutates it; readers load
    their own copies from snapshots and only search.
    """

    def __init__(self, config: IndexConfig, dim: int | None = None) -> None:
        self.config = config
        self.dim = dim
        self._index: Any = None  # faiss.IndexIDMap2, created when dim is known
        self._gpu_index: Any = None
        self._ivf_trained = False
        self._next_id = 0
        self._sid_to_id: dict[str, int] = {}
        self._id_to_sid: dict[int, str] = {}
        self._videos: dict[str, VideoEntry] = {}
        self._dead: set[int] = set()
        if dim is not None:
            self._index = self._new_index(trained=False)

    # -- construction -----------------------------------------------------
    def _new_index(self, trained: bool) -> Any:
        assert self.dim is not None
        d, c = self.dim, self.config
        if c.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(d, c.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = c.ef_construction
            inner.hnsw.efSearch = c.ef_search
        elif c.kind == "ivf" and trained:
            # IVF stores our ids in its lists itself: an IndexIDMap2 around it would go wrong
            # on remove_ids (IDMap2 compacts its id table as if the sub-index renumbered, which
            # IVF does not). A hashtable direct map makes reconstruct() and remove_ids() work.
            quantizer = faiss.IndexFlatIP(d)
            ivf = faiss.IndexIVFFlat(quantizer, d, c.nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.nprobe = c.nprobe
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
            return ivf
        else:  # flat, and IVF before it has enough vectors to train
            inner = faiss.IndexFlatIP(d)
        # faiss's Python layer keeps `inner` (and the quantizer) alive with the wrapper.
        return faiss.IndexIDMap2(inner)

    @property
    def kind(self) -> str:
        """What the index actually is right now (``ivf-untrained`` before training)."""
        if self.config.kind == "ivf" and not self._ivf_trained:
            return "ivf-untrained"
        return self.config.kind

    # -- inspection -------------------------------------------------------
    def __len__(self) -> int:
        """Live vectors (tombstoned HNSW nodes excluded)."""
        return len(self._sid_to_id)

    @property
    def physical_size(self) -> int:
        """Vectors stored in FAISS, tombstones included."""
        return int(self._index.ntotal) if self._index is not None else 0

    @property
    def dead_count(self) -> int:
        return len(self._dead)

    def __contains__(self, segment_id: object) -> bool:
        return segment_id in self._sid_to_id

    def video_version(self, video_id: str) -> int | None:
        entry = self._videos.get(video_id)
        return entry.version if entry else None

    def video_segments(self, video_id: str) -> list[str]:
        entry = self._videos.get(video_id)
        return [self._id_to_sid[i] for i in entry.ids] if entry else []

    def videos(self) -> dict[str, VideoEntry]:
        return self._videos

    def segment_ids(self) -> list[str]:
        return list(self._sid_to_id)

    def ids_for(self, segment_ids: Iterable[str]) -> np.ndarray:
        """The int64 ids of those segments that are in the index (others skipped)."""
        ids = [self._sid_to_id[s] for s in segment_ids if s in self._sid_to_id]
        return np.asarray(ids, dtype=np.int64)

    def vector(self, segment_id: str) -> np.ndarray | None:
        """The stored (normalised) vector of a segment."""
        i = self._sid_to_id.get(segment_id)
        return None if i is None else np.asarray(self._index.reconstruct(int(i)), dtype=np.float32)

    # -- mutation ---------------------------------------------------------
    def upsert_video(self, video_id: str, version: int, segment_ids: Sequence[str], vectors: np.ndarray) -> bool:
        """Replace a video's vectors unless ``version`` is not newer than the indexed one.

        Returns False (and changes nothing) for a stale or repeated version, which is
        what makes replaying the log after a restart idempotent.
        """
        current = self._videos.get(video_id)
        if current is not None and version <= current.version:
            return False
        x = normalise(vectors) if len(segment_ids) else np.zeros((0, self.dim or 0), np.float32)
        if len(segment_ids) != x.shape[0]:
            raise IndexDataError(f"{len(segment_ids)} segment ids but {x.shape[0]} vectors")
        if len(set(segment_ids)) != len(segment_ids):
            raise IndexDataError(f"video {video_id} repeats a segment id")
        if x.shape[0]:
            self._ensure_dim(x.shape[1])
        own = set(current.ids) if current is not None else set()
        for sid in segment_ids:
            i = self._sid_to_id.get(sid)
            if i is not None and i not in own:
                raise IndexDataError(f"segment {sid} already belongs to another video")
        self.remove_video(video_id)
        ids = list(range(self._next_id, self._next_id + len(segment_ids)))
        self._next_id += len(ids)
        if ids:
            self._index.add_with_ids(x, np.asarray(ids, dtype=np.int64))
            self._gpu_index = None  # stale copy
        for sid, i in zip(segment_ids, ids, strict=True):
            self._sid_to_id[sid] = i
            self._id_to_sid[i] = sid
        self._videos[video_id] = VideoEntry(version=version, ids=ids)
        self._maybe_train_ivf()
        return True

    def remove_video(self, video_id: str) -> int:
        """Drop a video's vectors; returns how many were removed."""
        entry = self._videos.pop(video_id, None)
        if entry is None or not entry.ids:
            return 0
        for i in entry.ids:
            sid = self._id_to_sid.pop(i, None)
            if sid is not None:
                self._sid_to_id.pop(sid, None)
        ids = np.asarray(entry.ids, dtype=np.int64)
        if self.config.kind == "hnsw":
            self._dead.update(entry.ids)  # HNSW cannot remove: tombstone, filter at search
        else:
            self._index.remove_ids(self._remove_selector(ids))
        self._gpu_index = None
        return len(entry.ids)

    def _remove_selector(self, ids: np.ndarray) -> Any:
        if self.kind == "ivf":
            # The hashtable direct map removes by looking each id up (O(removed)) but only
            # accepts an explicit array of ids.
            return faiss.IDSelectorArray(ids)
        return faiss.IDSelectorBatch(ids)

    def _ensure_dim(self, dim: int) -> None:
        if self.dim is None:
            self.dim = dim
            self._index = self._new_index(trained=False)
        elif dim != self.dim:
            raise IndexDataError(f"embedding has {dim} dimensions, the index {self.dim}")

    def _live_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        ids = np.fromiter(self._id_to_sid.keys(), dtype=np.int64, count=len(self._id_to_sid))
        if not len(ids):
            return ids, np.zeros((0, self.dim or 0), np.float32)
        return ids, np.asarray(self._index.reconstruct_batch(ids), dtype=np.float32)

    def _maybe_train_ivf(self) -> None:
        if self.config.kind != "ivf" or self._ivf_trained or len(self) < self.config.effective_train_min:
            return
        ids, x = self._live_vectors()
        index = self._new_index(trained=True)
        log.info("training IVF index (nlist=%d) on %d vectors", self.config.nlist, len(ids))
        index.train(x)
        index.add_with_ids(x, ids)
        self._index, self._ivf_trained = index, True

    def maybe_rebuild(self) -> bool:
        """Rebuild an HNSW graph from its live vectors once enough nodes are tombstones."""
        if self.config.kind != "hnsw" or not self._dead:
            return False
        dead = len(self._dead)
        if dead < self.config.rebuild_min_dead or dead < self.config.rebuild_dead_fraction * self.physical_size:
            return False
        self.rebuild()
        return True

    def rebuild(self) -> None:
        """Build a fresh FAISS index from the live vectors (drops tombstones, retrains IVF)."""
        if self._index is None:
            return
        ids, x = self._live_vectors()
        log.info(
            "rebuilding %s index from %d live vectors (%d tombstones)", self.config.kind, len(ids), len(self._dead)
        )
        trained = self.config.kind == "ivf" and len(ids) >= self.config.effective_train_min
        index = self._new_index(trained=trained)
        if trained:
            index.train(x)
        if len(ids):
            index.add_with_ids(x, ids)
        self._index, self._ivf_trained, self._dead = index, trained, set()
        self._gpu_index = None

    # -- search -----------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> list[list[Hit]]:
        """The k nearest live segments of each query, best first.

        ``allowed_ids`` restricts the search to those ids inside FAISS (an
        ``IDSelectorBatch`` in the search parameters), so a tag filter costs no
        over-fetching. An empty ``allowed_ids`` gives empty results.
        """
        q = normalise(queries)
        if self._index is None or len(self) == 0 or k < 1 or (allowed_ids is not None and not len(allowed_ids)):
            return [[] for _ in range(q.shape[0])]
        if q.shape[1] != self.dim:
            raise IndexDataError(f"query has {q.shape[1]} dimensions, the index {self.dim}")
        k_eff = min(k, len(self) if allowed_ids is None else len(allowed_ids))
        scores, labels = self._faiss_search(q, k_eff, allowed_ids)
        out = [self._hits(scores[r], labels[r]) for r in range(q.shape[0])]
        if allowed_ids is not None and self.kind in ("ivf", "hnsw") and len(allowed_ids) <= EXACT_FILTER_MAX:
            # Graph/list pruning can starve a selective filter; redo those rows exactly.
            for r, hits in enumerate(out):
                if len(hits) < k_eff:
                    out[r] = self._exact_subset(q[r], k_eff, allowed_ids)
        return out

    def _search_params(self, selector: Any) -> Any:
        kind = self.kind
        if kind == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=self.config.nprobe)
        if kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.config.ef_search, 1))
        return faiss.SearchParameters(sel=selector)

    def _faiss_search(self, q: np.ndarray, k: int, allowed_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        selector: Any = None
        keep: list[Any] = []  # SWIG selectors must outlive the search call
        if allowed_ids is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
            keep.append(selector)
        elif self._dead:
            dead = faiss.IDSelectorBatch(np.fromiter(self._dead, dtype=np.int64, count=len(self._dead)))
            selector = faiss.IDSelectorNot(dead)
            keep += [dead, selector]
        if selector is None and self._gpu_index is not None:
            return self._gpu_index.search(q, k)
        if selector is None and self.kind == "flat":
            return self._index.search(q, k)
        params = self._search_params(selector)
        result = self._index.search(q, k, params=params)
        del keep
        return result

    def _hits(self, scores: np.ndarray, labels: np.ndarray) -> list[Hit]:
        hits = []
        for s, i in zip(scores.tolist(), labels.tolist(), strict=True):
            sid = self._id_to_sid.get(int(i)) if i >= 0 else None
            if sid is not None:
                hits.append(Hit(sid, float(s)))
        return hits

    def _exact_subset(self, q: np.ndarray, k: int, allowed_ids: np.ndarray) -> list[Hit]:
        ids = np.asarray([i for i in allowed_ids.tolist() if i in self._id_to_sid], dtype=np.int64)
        if not len(ids):
            return []
        x = np.asarray(self._index.reconstruct_batch(ids), dtype=np.float32)
        scores = x @ q
        order = np.argsort(-scores, kind="stable")[:k]
        return [Hit(self._id_to_sid[int(ids[j])], float(scores[j])) for j in order]

    def to_gpu(self) -> bool:
        """Keep a GPU copy for unfiltered flat/IVF searches; False when no GPU (or HNSW)."""
        if not self.config.use_gpu or self.kind == "hnsw" or self._index is None or not gpu_available():
            return False
        resources = faiss.StandardGpuResources()
        self._gpu_index = faiss.index_cpu_to_gpu(resources, 0, self._index)
        self._gpu_resources = resources  # must outlive the GPU index
        return True

    # -- persistence (used by segtag.index_snapshot) ------------------------
    def state(self) -> dict[str, Any]:
        """The mappings as JSON-able data (the FAISS bytes travel separately)."""
        return {
            "kind": self.config.kind,
            "config": self.config.as_dict(),
            "dim": self.dim,
            "next_id": self._next_id,
            "ivf_trained": self._ivf_trained,
            "videos": {
                vid: {"version": e.version, "segments": [[self._id_to_sid[i], i] for i in e.ids]}
                for vid, e in self._videos.items()
            },
            "dead": sorted(self._dead),
        }

    def faiss_bytes(self) -> np.ndarray:
        if self._index is None:
            return np.zeros(0, dtype=np.uint8)
        return np.asarray(faiss.serialize_index(self._index), dtype=np.uint8)

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        faiss_data: np.ndarray,
        config: IndexConfig | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> SegmentIndex:
        """Rebuild an index from :meth:`state` and :meth:`faiss_bytes` output.

        ``config`` replaces the stored config (but never the kind, which the FAISS
        bytes fix); ``overrides`` change single knobs such as ``nprobe`` or ``ef_search``.
        """
        stored = IndexConfig(**state["config"])
        cfg = replace(config, kind=stored.kind) if config is not None else stored
        if overrides:
            cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
        index = cls(cfg)
        index.dim = state["dim"]
        index._next_id = int(state["next_id"])
        index._ivf_trained = bool(state["ivf_trained"])
        index._dead = {int(i) for i in state["dead"]}
        for vid, entry in state["videos"].items():
            ids = []
            for sid, i in entry["segments"]:
                index._sid_to_id[sid] = int(i)
                index._id_to_sid[int(i)] = sid
                ids.append(int(i))
            index._videos[vid] = VideoEntry(int(entry["version"]), ids)
        if len(faiss_data):
            index._index = faiss.deserialize_index(np.ascontiguousarray(faiss_data, dtype=np.uint8))
        elif index.dim is not None:
            index._index = index._new_index(trained=False)
        if index._index is not None and int(index._index.ntotal) != len(index._sid_to_id) + len(index._dead):
            raise IndexDataError(
                f"snapshot holds {index._index.ntotal} vectors but maps {len(index._sid_to_id)} live + "
                f"{len(index._dead)} dead ids"
            )
        return index
