# syntax=docker/dockerfile:1
# vlserve with the embedded transformers engine on CPU (torch 2.13.0 CPU build): one box, no GPU.
# Serves `--model tiny` out of the box; mount a checkpoint and pass `--model /models/NAME` for a real one.
# Build from the repository root:  docker build -f deploy/docker/engine-cpu.Dockerfile -t vlserve-cpu .
FROM python:3.12-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VLSERVE_DATA_DIR=/var/lib/vlserve \
    HF_HOME=/var/lib/vlserve/hf
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The CPU wheel of torch first, from PyTorch's CPU index: any looser spec pulls gigabytes of CUDA
# libraries. Never torchvision (vlserve does not need it; PyPI's build is a CUDA one).
# DL3013: torch is pinned; "." is this source tree, whose dependency ranges are pyproject.toml's.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && pip install --no-cache-dir ".[local,redis]" \
    && useradd --system --uid 10001 --home-dir /var/lib/vlserve --create-home vlserve
USER 10001
WORKDIR /var/lib/vlserve
# The tiny model is built at first start into ~/.cache/vlserve/models (seconds, offline).
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["vlserve", "serve"]
CMD ["--model", "tiny", "--host", "0.0.0.0", "--port", "8000"]
