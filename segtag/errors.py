"""The small set of exception types segtag raises.

Two families matter to the services:

* :class:`PoisonError` - the input itself is bad (an invalid event, an unreadable
  or over-limit video). Retrying cannot help: the message goes to the
  dead-letter topic with the reason and its offset is committed.
* :class:`RetryableError` - something outside is away for now (Redis, the broker,
  an HTTP origin). The work is retried with backoff and its offset is not
  committed until it succeeds.
"""

from __future__ import annotations


class SegtagError(Exception):
    """Base class of every segtag error."""


class SettingsError(SegtagError, ValueError):
    """A setting has a bad value; the message names the variable."""


class ServiceError(SegtagError):
    """A local service (Kafka broker, Redis) failed to start or stop."""


class PoisonError(SegtagError):
    """Bad input: never retried, sent to the dead-letter topic."""


class InvalidEventError(PoisonError):
    """An upload event that does not follow the schema in docs/events.md."""


class VideoError(PoisonError):
    """A video that cannot be tagged."""


class UnsupportedSourceError(VideoError):
    """A URI whose scheme or location is not allowed (see media roots)."""


class VideoUnreadableError(VideoError):
    """An empty, truncated, corrupt or non-video file, or an unsupported codec."""


class VideoLimitError(VideoError):
    """A video over the configured size, resolution or duration limits."""


class ModelError(SegtagError):
    """A model directory that is missing or inconsistent."""


class RetryableError(SegtagError):
    """A transient failure: retry later without committing."""


class TransientSourceError(RetryableError):
    """A remote video source that timed out or answered 5xx."""


class SinkUnavailableError(RetryableError):
    """Redis or the broker did not accept the results for now."""
