# syntax=docker/dockerfile:1
# The pipeline's one image: every process is `pipeline <command>` (worker, bridge, beat, flower,
# migrate, setup). Build arg EXTRAS picks the optional dependencies: `postgres` (the default, the
# report database's driver); on-prem sites that run the local model add `model`:
#   docker build -t s3-moderation-pipeline .
#   docker build --build-arg EXTRAS=postgres,model -t s3-moderation-pipeline:model .
# No secret is baked in: settings and credentials come from the environment at run time.

ARG PYTHON_IMAGE=python:3.11-slim

# -- build: install the package and its extras into a virtual environment ------------------------
FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=postgres
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# pdqhash has no cp311 wheel: the `pdq` extra needs a C++ compiler, in this stage only.
# Debian's version is not pinned: the build stage is thrown away, and pins break as the archive moves.
# hadolint ignore=DL3008
RUN if [[ ",${EXTRAS}," == *,pdq,* ]]; then \
        apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*; \
    fi
RUN python -m venv /opt/pipeline
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY bridge ./bridge
RUN /opt/pipeline/bin/pip install ".[${EXTRAS}]"

# -- run: the virtual environment and a non-root user, nothing else ------------------------------
FROM ${PYTHON_IMAGE}
ARG EXTRAS=postgres
LABEL org.opencontainers.image.title="s3-moderation-pipeline" \
      org.opencontainers.image.description="Moderate images uploaded to S3: S3 events -> SQS -> bridge -> Celery" \
      org.opencontainers.image.licenses="Apache-2.0" \
      s3-moderation-pipeline.extras="${EXTRAS}"
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it without a user database.
RUN groupadd --system --gid 10001 pipeline \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/pipeline --create-home pipeline
COPY --from=build /opt/pipeline /opt/pipeline
# PIPELINE_STATE_DIR holds beat's schedule file (a volume, or an emptyDir under a read-only root).
# Inside a container the metrics endpoint and Flower listen on every interface; what reaches them
# is decided where the ports are published (Compose) or by the Services (Kubernetes).
ENV PATH=/opt/pipeline/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIPELINE_STATE_DIR=/var/lib/pipeline \
    PIPELINE_METRICS_ADDRESS=0.0.0.0 \
    PIPELINE_FLOWER_ADDRESS=0.0.0.0
WORKDIR /var/lib/pipeline
USER 10001:10001
EXPOSE 9808 5555
# The worker's and the bridge's /healthz (slim has no curl: python's urllib; an HTTP 503 raises).
# Compose and Kubernetes give flower, beat and the one-shot commands their own checks. 4 x 30 s is
# longer than the bridge's 90 s /healthz max age.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=4 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PIPELINE_METRICS_PORT', '9808'), timeout=4)"]
ENTRYPOINT ["pipeline"]
CMD ["worker"]
