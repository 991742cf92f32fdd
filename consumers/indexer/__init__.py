"""The indexer: the single writer of the FAISS segment index.

It reads the segments events the taggers publish (``Settings.segments_topic``),
applies them to a :class:`segtag.index.SegmentIndex` (upsert by video, newest
version wins), writes atomic snapshots that record the log positions they
include, and commits those positions to Kafka only after the snapshot is on disk.

* ``worker.py`` - the consume loop, signals, offsets.
* ``snapshot.py`` - when to snapshot, loading the last snapshot at start-up.
* ``rebuild.py`` - building the index from Redis when there is no usable snapshot.
"""

from consumers.indexer.worker import IndexerOptions, IndexerWorker, run_indexer

__all__ = ["IndexerOptions", "IndexerWorker", "run_indexer"]
