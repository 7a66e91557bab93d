# syntax=docker/dockerfile:1
# The vlserve gateway: task API, lanes, admission, jobs, in front of vLLM/SGLang upstreams.
# No torch, no transformers: `pip install ".[gateway,s3]"` (the server, the Redis client, and boto3
# for artifacts in an S3-compatible store: docs/deploy.md).
# Build from the repository root:  docker build -f deploy/docker/gateway.Dockerfile -t vlserve-gateway .
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# A wheel with its dependencies, built once; the runtime stage installs only these files.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[gateway,s3]"

FROM python:3.12-slim-bookworm
# Unbuffered logs reach `docker logs` at once; no .pyc writes into a read-only root filesystem.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VLSERVE_DATA_DIR=/var/lib/vlserve
COPY --from=build /wheels /wheels
# DL3013: what is installed is this source tree's wheel and the wheels built beside it in the
# build stage, offline (--no-index); the dependency ranges are pyproject.toml's.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-index --find-links=/wheels "vlserve[gateway,s3]" \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /var/lib/vlserve --create-home vlserve \
    && install -d -o 10001 /shared/artifacts  # owned by the user, so a fresh named volume is too
USER 10001
WORKDIR /var/lib/vlserve
EXPOSE 8000
# /healthz answers while the process lives; readiness (/readyz) is the orchestrator's to probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["vlserve", "serve"]
CMD ["--config", "/etc/vlserve/vlserve.toml", "--host", "0.0.0.0", "--port", "8000"]
