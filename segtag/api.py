"""The HTTP query API: ``create_app(settings)`` builds a FastAPI app (OpenAPI at /docs).

Routes (see docs/api.md):

* ``GET /videos/{video_id}`` - a video's tags and segments
* ``GET /tags/{tag}/segments`` - segments carrying a tag (min_score, offset, limit)
* ``GET /segments/{segment_id}/similar`` and ``GET /videos/{video_id}/similar`` -
  nearest segments (k, min_score, optional tag filter)
* ``GET /healthz`` - Redis and index state; ``GET /metrics`` - Prometheus

Unknown ids answer 404 with a message, bad parameters 422 (FastAPI's validation),
an index that is not loaded yet 503. The app owns everything it uses (client,
metrics registry) so several apps can live in one process (tests).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import redis
from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, Field

from segtag.index import IndexDataError
from segtag.query import IndexReader, IndexUnavailableError, NotFoundError, SegtagClient
from segtag.settings import Settings

# -- response models -------------------------------------------------------------


class TagScoreModel(BaseModel):
    tag: str
    score: float


class SegmentModel(BaseModel):
    segment_id: str = Field(description="f'{video_id}#{index}'")
    video_id: str
    index: int
    start: float = Field(description="seconds")
    end: float = Field(description="seconds")
    tags: list[TagScoreModel]
    score: float | None = Field(None, description="tag score or cosine similarity, depending on the route")


class VideoModel(BaseModel):
    video_id: str
    status: str
    title: str
    duration_s: float | None
    model_version: str
    version: int | None
    tags: list[TagScoreModel]
    segments: list[SegmentModel]
    error: str | None = None


class SegmentPageModel(BaseModel):
    tag: str
    total: int = Field(description="segments with score >= min_score")
    offset: int
    limit: int
    min_score: float
    items: list[SegmentModel]


class SimilarModel(BaseModel):
    query: str = Field(description="the segment or video asked about")
    k: int
    items: list[SegmentModel]


class ErrorModel(BaseModel):
    detail: str


class HealthModel(BaseModel):
    ok: bool
    redis: dict[str, Any]
    index: dict[str, Any]


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorModel, "description": "unknown id"},
    503: {"model": ErrorModel, "description": "index or Redis not available"},
}

K = Annotated[int, Query(ge=1, le=1000, description="results to return")]
MinSim = Annotated[float, Query(ge=-1.0, le=1.0, description="lowest cosine similarity")]
TagFilter = Annotated[str | None, Query(min_length=1, max_length=200, description="only segments with this tag")]


class _Metrics:
    """Per-app Prometheus metrics (own registry: no process-wide state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "segtag_api_requests", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram("segtag_api_latency_seconds", "request latency", ["route"], registry=self.registry)
        self.vectors = Gauge("segtag_index_vectors", "vectors in the loaded index snapshot", registry=self.registry)


def create_app(settings: Settings, search_overrides: dict[str, Any] | None = None) -> FastAPI:
    """The query API over ``settings``' Redis and index snapshot (read-only)."""
    client = SegtagClient(settings, reader=IndexReader(settings.index_dir, search_overrides))
    metrics = _Metrics()
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        client.close()

    app = FastAPI(
        lifespan=lifespan,
        title="segtag",
        description="Video tags, tagged segments and similar segments.",
        version="1",
    )
    app.state.client = client
    app.state.metrics = metrics

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(IndexUnavailableError)
    async def _no_index(request: Request, exc: IndexUnavailableError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.exception_handler(IndexDataError)
    async def _index_mismatch(request: Request, exc: IndexDataError) -> JSONResponse:
        # e.g. a model with another embedding size wrote Redis since the index was built
        return JSONResponse(status_code=500, content={"detail": f"index cannot answer: {exc}"})

    @app.exception_handler(redis.RedisError)
    async def _no_redis(request: Request, exc: redis.RedisError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": f"Redis unavailable: {exc}"})

    @app.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics.requests.labels(name, str(response.status_code)).inc()
        metrics.latency.labels(name).observe(time.perf_counter() - started)
        return response

    _routes(app, client, metrics)
    return app


def _routes(app: FastAPI, client: SegtagClient, metrics: _Metrics) -> None:
    # Plain (sync) handlers: FastAPI runs them in its thread pool, so blocking Redis
    # calls and FAISS searches do not stall the event loop.

    @app.get("/videos/{video_id}", response_model=VideoModel, responses=_ERRORS, tags=["videos"])
    def get_video(video_id: Annotated[str, Path(min_length=1)]) -> dict[str, Any]:
        """A video's status, video-level tags and its segments in time order."""
        return client.video(video_id).as_dict()

    @app.get("/tags/{tag}/segments", response_model=SegmentPageModel, responses=_ERRORS, tags=["tags"])
    def tag_segments(
        tag: Annotated[str, Path(min_length=1)],
        min_score: Annotated[float, Query(ge=0.0, le=1.0, description="lowest tag score")] = 0.0,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    ) -> dict[str, Any]:
        """Segments carrying ``tag`` at or above ``min_score``, best score first, paged."""
        return client.segments_with_tag(tag, min_score, offset, limit).as_dict()

    @app.get("/segments/{segment_id}/similar", response_model=SimilarModel, responses=_ERRORS, tags=["similar"])
    def similar_segment(
        segment_id: Annotated[str, Path(min_length=1)],
        k: K = 10,
        min_score: MinSim = -1.0,
        tag: TagFilter = None,
        include_self: Annotated[bool, Query(description="the segment itself as first result")] = True,
    ) -> dict[str, Any]:
        """Segments that look and sound like this one (cosine over segment embeddings)."""
        return client.similar_to_segment(segment_id, k, min_score, tag, include_self).as_dict()

    @app.get("/videos/{video_id}/similar", response_model=SimilarModel, responses=_ERRORS, tags=["similar"])
    def similar_video(
        video_id: Annotated[str, Path(min_length=1)],
        k: K = 10,
        min_score: MinSim = -1.0,
        tag: TagFilter = None,
    ) -> dict[str, Any]:
        """Segments of other videos nearest to this video's mean segment embedding."""
        return client.similar_to_video(video_id, k, min_score, tag).as_dict()

    @app.get("/healthz", response_model=HealthModel, responses={503: {"model": HealthModel}}, tags=["ops"])
    def healthz(response: Response) -> dict[str, Any]:
        """200 when Redis answers and an index snapshot is loaded, else 503 with the reasons."""
        state = client.health()
        ok = bool(state["redis"]["ok"] and state["index"]["loaded"])
        response.status_code = 200 if ok else 503
        return {"ok": ok, **state}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus text exposition."""
        index = client.reader.get()
        metrics.vectors.set(len(index) if index is not None else 0)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
