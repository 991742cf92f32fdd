"""Real Kafka (KRaft, from Maven Central jars) and Redis (Debian's redis-server) on
loopback, without Docker: ``segtag services up|down|status``.

Everything lives under one state directory (``SEGTAG_STATE_DIR``)::

    STATE/kafka/{server.properties, log4j2.properties, data/, kafka.log, pid}
    STATE/redis/{redis.log, appendonlydir/, pid}

``up`` is idempotent, ``down`` stops only the processes whose pid files it wrote.
"""

from segtag.services.manager import (
    ServiceStatus,
    isolated_settings,
    services_down,
    services_status,
    services_up,
)

__all__ = ["ServiceStatus", "isolated_settings", "services_down", "services_status", "services_up"]
