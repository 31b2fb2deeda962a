# jupybot in a container: docs/deploy.md, "Docker", says how to run it (bubblewrap needs a few
# run options; the page says which and why), and "Building the image without Docker Hub" how
# the tests build and run this file unchanged with podman.
#
#   docker build -t jupybot .            # podman: podman build --format docker -t jupybot .
#   docker run -d --name jupybot -p 127.0.0.1:8080:8080 -v jupybot-state:/var/lib/jupybot \
#     --security-opt seccomp=deploy/seccomp.json --security-opt apparmor=unconfined \
#     --security-opt systempaths=unconfined --stop-timeout 90 jupybot

# 1. The browser terminal's front-end files: xterm.js from the npm registry and jupybot's own
# scripts, bundled by esbuild, as `make` does.
FROM node:20-bookworm-slim AS web-assets
WORKDIR /src
COPY package.json package-lock.json esbuild.config.js ./
COPY scripts/install-web-assets scripts/
COPY jupybot/terminal/static jupybot/terminal/static
RUN scripts/install-web-assets

# 2. jupybot's wheel, with those files inside.
FROM debian:bookworm-slim AS wheel
# Debian's versions are not pinned: a pinned one disappears from the mirrors at the next
# security update, and bookworm's stable updates are what the image should get.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
COPY --from=web-assets /src/jupybot/terminal/static/vendor jupybot/terminal/static/vendor
RUN python3 -m venv /tmp/build \
    && /tmp/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

# 3. What runs: Debian's Python (kernels run it as the sandbox sees it), bubblewrap, util-linux
# (prlimit, setpriv), libseccomp2 for the sandboxes' syscall filter, libcairo2 for SVG outputs
# (cairosvg: docs/rendering.md), bc and nodejs for the demo programs, tini to reap what the
# programs orphan.
FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-venv bubblewrap util-linux libseccomp2 libcairo2 bc nodejs tini \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# The kernel extra: plots and tables for chat users (matplotlib, pandas), as `make run` has it.
ARG JUPYBOT_EXTRAS=kernel
COPY --from=wheel /dist /dist
RUN python3 -m venv /opt/jupybot/venv \
    && /opt/jupybot/venv/bin/pip install --no-cache-dir \
        "$(ls /dist/jupybot-*.whl)[${JUPYBOT_EXTRAS}]" \
    && rm -rf /dist \
    && /opt/jupybot/venv/bin/python -c \
        'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'
# A user of its own, never root: visitors' programs and kernels run as this user inside
# bubblewrap's user namespaces.
RUN groupadd --system --gid 10001 jupybot \
    && useradd --system --uid 10001 --gid jupybot --home-dir /var/lib/jupybot \
        --shell /usr/sbin/nologin jupybot \
    && install -d -o jupybot -g jupybot -m 0700 /var/lib/jupybot
COPY deploy/container.yml /etc/jupybot/config.yml
# Runs tini and jupybot; started as root (for per-session cgroups: docs/deploy.md) it hands the
# container's cgroup to jupybot first, then drops to this user with no capability left.
COPY deploy/container-entrypoint /usr/local/bin/jupybot-entrypoint
USER 10001:10001
WORKDIR /var/lib/jupybot
# JUPYBOT_CONFIG: what twistd and `python -m jupybot.contact` read without --config.
ENV HOME=/var/lib/jupybot PYTHONUNBUFFERED=1 JUPYBOT_CONFIG=/etc/jupybot/config.yml
VOLUME ["/var/lib/jupybot"]
EXPOSE 8080
# /ping answers 503 while a part starts or is down: the container is then unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD ["/opt/jupybot/venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=4)"]
ENTRYPOINT ["/usr/local/bin/jupybot-entrypoint"]
CMD ["--config", "/etc/jupybot/config.yml"]
