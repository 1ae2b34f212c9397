# One image for every process of the worker: migrate, ingest, worker, beat, fortnox-stream.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# The pinned versions (requirements/constraints.txt) make the image's packages those CI tested.
COPY pyproject.toml README.md alembic.ini ./
COPY requirements ./requirements
COPY models ./models
COPY connectors ./connectors
COPY worker ./worker
RUN pip install --no-cache-dir -c requirements/constraints.txt . \
    && useradd --system --uid 10001 connections

USER connections
ENV CONNECTIONS_LOG_FORMAT=json
CMD ["connections", "ingest", "--host", "0.0.0.0", "--port", "8000"]
