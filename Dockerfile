# syntax=docker/dockerfile:1
# slots-service image: `serve` by default; the same image runs `scheduler` and `migrate`.
#   docker build -t slots-service:0.1.0 .
#   docker run --rm -e DATABASE_URL=... -e REDIS_URL=... -e SLOTS_API_KEYS=... -p 8000:8000 slots-service:0.1.0

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# README.md* : optional (pyproject names it as the long description).
COPY pyproject.toml README.md* ./
COPY slots_service ./slots_service
# No dev/load extras: runtime dependencies only. Not editable: the venv is self-contained.
RUN pip install . && pip uninstall -y pip setuptools

FROM python:3.11-slim AS runtime
RUN groupadd --system --gid 10001 slots \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin slots
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    SLOTS_HOST=0.0.0.0 \
    SLOTS_PORT=8000 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
# Liveness of the API process (`serve`). Containers running `scheduler` or `migrate` from this
# image serve no HTTP: disable it there (compose `healthcheck: {disable: true}`); Kubernetes
# ignores it and uses the probes in k8s/.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SLOTS_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["slots-service"]
CMD ["serve"]
