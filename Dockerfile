# syntax=docker/dockerfile:1
#
# Two images from one file:
#   docker build --target api    -t embedtune-api    .   # FastAPI + `embedtune migrate`; no torch
#   docker build --target worker -t embedtune-worker .   # Celery GPU worker; CUDA torch from PyPI
#
# The api image holds app/, rules/ (what the API and the worker both apply) and the client package
# (the CLI's job commands), never worker/: import-linter keeps app/ from importing it.
#
# Stages: base -> deps -> api-deps -> api
#                      -> worker-deps -> worker
# The *-deps stages install only the dependencies declared in pyproject.toml (the package itself
# is a stub there), so their layers stay cached until pyproject.toml changes; the final stages
# copy the source and install the package on top with --no-deps.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    EMBEDTUNE_DATA_DIR=/data \
    EMBEDTUNE_MODEL_DIRS=/models

# One non-root user with a fixed uid/gid in both images. /data (each container's own scratch:
# the bytes live in the object store) and /hf-cache are created owned by that user, so that
# fresh named volumes mounted there inherit the ownership.
# hadolint ignore=DL3013
RUN groupadd --system --gid 10001 embedtune \
 && useradd --system --uid 10001 --gid embedtune --create-home --home-dir /home/embedtune \
        --shell /usr/sbin/nologin embedtune \
 && install -d -o embedtune -g embedtune -m 0755 /data /hf-cache \
 && install -d -m 0755 /models \
 && python -m venv "$VIRTUAL_ENV" \
 && pip install --no-cache-dir --upgrade pip "setuptools>=69" wheel

WORKDIR /app

# ---------------------------------------------------------------------------------------------
FROM base AS deps

# Only what dependency resolution needs; a stub package stands in for the source. No worker/
# stub: it would stay behind in the api image, which must not have one.
COPY pyproject.toml README.md ./
RUN mkdir -p app && touch app/__init__.py

# ---------------------------------------------------------------------------------------------
FROM deps AS api-deps

# Base dependencies only. The constraint `torch<0` can never be satisfied, so if any base
# dependency ever pulls torch in, the build fails instead of silently shipping it.
RUN echo "torch<0" > /etc/embedtune-api-constraints.txt \
 && pip install --no-cache-dir --no-build-isolation --constraint /etc/embedtune-api-constraints.txt . \
 && pip uninstall -y embedtune \
 && rm -rf build embedtune.egg-info \
 && python -c "import importlib.util, sys; bad = [m for m in ('torch', 'sentence_transformers') if importlib.util.find_spec(m)]; sys.exit(f'api image must not contain {bad}' if bad else 0)"

# ---------------------------------------------------------------------------------------------
FROM api-deps AS api

COPY alembic.ini ./
COPY alembic ./alembic
COPY client ./client
COPY rules ./rules
COPY app ./app
# Editable install: `app`/`rules` are imported from /app, next to alembic.ini and alembic/. The
# package patterns in pyproject.toml match no worker/ here, which is fine.
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e . \
 && python -m compileall -q app rules \
 && python -c "import importlib.util, sys; bad = [m for m in ('torch', 'worker') if importlib.util.find_spec(m)]; sys.exit(f'api image must not contain {bad}' if bad else 0)" \
 && python -c "import app.main, app.cli"

# Numeric, so runtimes enforcing runAsNonRoot can verify it (uid of `embedtune` above).
USER 10001:10001
EXPOSE 8000
CMD ["embedtune", "api", "--host", "0.0.0.0", "--port", "8000"]

# ---------------------------------------------------------------------------------------------
FROM deps AS worker-deps

# The worker extra: torch==2.13.0 from PyPI, whose Linux x86_64 wheel is the CUDA build (it pulls
# the nvidia-* runtime wheels; the host only needs the driver + NVIDIA Container Toolkit).
# Set --build-arg REQUIRE_CUDA_TORCH=0 to build a CPU-only worker (e.g. on arm64).
ARG REQUIRE_CUDA_TORCH=1
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-build-isolation ".[worker]" \
 && pip uninstall -y embedtune \
 && rm -rf build embedtune.egg-info \
 && if [ "$REQUIRE_CUDA_TORCH" = "1" ]; then \
        python -c "import sys, torch; sys.exit(0 if torch.version.cuda else f'torch {torch.__version__} is a CPU build; the worker image needs the CUDA wheel')"; \
    fi

# ---------------------------------------------------------------------------------------------
FROM worker-deps AS worker

ENV HF_HOME=/hf-cache \
    EMBEDTUNE_WORKER_CONCURRENCY=1

COPY alembic.ini ./
COPY alembic ./alembic
COPY client ./client
COPY rules ./rules
COPY worker ./worker
COPY app ./app
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e . \
 && python -m compileall -q app rules worker

# Numeric, so runtimes enforcing runAsNonRoot can verify it (uid of `embedtune` above).
USER 10001:10001
CMD ["embedtune", "worker"]
