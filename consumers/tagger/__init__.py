"""The tagger service: upload events in, tags and segments out.

Split by concern, the way arq splits a worker:

* :mod:`.worker` - the Kafka poll loop: assignment, pausing, commits, rebalances, shutdown.
* :mod:`.stages` - the threads behind it: decode/features -> model (batched) -> sinks.
* :mod:`.jobs` - what happens to one upload: parse, status, pipeline, Redis, events.
* :mod:`.connections` - the Kafka consumer and producer and the Redis clients.
* :mod:`.metrics` - Prometheus metrics; :mod:`.health` - the Redis heartbeat and ``--check``.

Started by ``segtag tagger``.
"""
