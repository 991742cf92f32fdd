# One image for every segtag service (tagger, indexer, api); the command picks the service.
FROM python:3.11-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY segtag ./segtag
COPY consumers ./consumers
COPY models ./models
RUN pip install --no-cache-dir .
ENV SEGTAG_MODEL_DIR=/app/models/demo
ENTRYPOINT ["segtag"]
