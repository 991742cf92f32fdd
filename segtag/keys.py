"""Redis key names of the schema in docs/redis-schema.md, under one prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix (``Settings.redis_prefix``)."""

    prefix: str

    def video(self, vid: str) -> str:
        return f"{self.prefix}:video:{vid}"

    def video_segments(self, vid: str) -> str:
        return f"{self.prefix}:video:{vid}:segments"

    def segment(self, sid: str) -> str:
        return f"{self.prefix}:segment:{sid}"

    def tag_segments(self, tag: str) -> str:
        return f"{self.prefix}:tag:{tag}:segments"

    def tag_videos(self, tag: str) -> str:
        return f"{self.prefix}:tag:{tag}:videos"

    @property
    def tags(self) -> str:
        return f"{self.prefix}:tags"

    @property
    def videos(self) -> str:
        return f"{self.prefix}:videos"

    def health(self, service: str, worker: str) -> str:
        return f"{self.prefix}:health:{service}:{worker}"
