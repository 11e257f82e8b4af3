# Architect in one image: the dashboard (master: broker + web) by default; workers and agents
# run the same image with another command (see docker-compose.yml and docs/DOCKER.md).
#
#   docker build -t architect .                                  # from python:3.11-slim-bookworm
#   podman build --build-arg BASE=localhost/bookworm-base -t architect .   # a local base image
#
# BASE is any Debian-like image. If it has no python3 (or no venv module), python3 and
# python3-venv are installed with apt-get. scripts/build-image makes a local base from a
# debootstrap rootfs when no registry can be reached.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# python3 and its venv module, when the base has none (a bare Debian rootfs)
RUN if ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        apt-get update && \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv ca-certificates && \
        rm -rf /var/lib/apt/lists/*; \
    fi

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/architect/bin:$PATH

WORKDIR /app

# The pinned dependencies first (from pyproject.toml, the one list), in their own layer, so a
# change to the code does not download them again. pip trusts a CA bundle mounted at
# /run/architect-build-ca.pem for the build only (a proxy's CA: see docs/DOCKER.md), else
# the system's.
COPY pyproject.toml README.md ./
RUN python3 -m venv /opt/architect && \
    python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt && \
    for ca in /run/architect-build-ca.pem /etc/ssl/certs/ca-certificates.crt; do \
        if [ -s "$ca" ]; then export PIP_CERT="$ca"; break; fi; done && \
    pip install -r /tmp/requirements.txt && \
    rm /tmp/requirements.txt

COPY architect ./architect
RUN for ca in /run/architect-build-ca.pem /etc/ssl/certs/ca-certificates.crt; do \
        if [ -s "$ca" ]; then export PIP_CERT="$ca"; break; fi; done && \
    pip install --no-deps . && architect --version

# The seed's entry points (python app.py, workers/task_worker.py, distributed/node_agent.py)
COPY app.py ./
COPY workers ./workers
COPY distributed ./distributed

# Not root: the data dir (a volume) and ~/.architect (node keys) belong to this user.
RUN useradd --system --uid 10001 --create-home --home-dir /home/architect architect && \
    mkdir -p /app/data && chown architect:architect /app/data && chmod 0700 /app/data
USER architect
# Mount a volume here on the dashboard (docker-compose.yml does). No VOLUME line: workers and
# agents keep nothing, and would each get an anonymous volume left behind by `down`.
ENV ARCHITECT_DATA_DIR=/app/data

# web, then the four bus ports (heartbeat, work, control, events)
EXPOSE 8080 5555 5556 5557 5558

# Docker honours this; podman only with --format docker (the compose file has its own).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)" || exit 1

# Binding 0.0.0.0 turns on the web login (ARCHITECT_USER / ARCHITECT_PASSWORD, or a generated
# password printed once) and CURVE on the bus (keys made on first start, in the data dir).
CMD ["python", "app.py", "--host", "0.0.0.0"]
