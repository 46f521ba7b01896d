# syntax=docker/dockerfile:1.7
# One image for the whole platform: the entrypoint is `mcpfleet`, and the operator, the gateway and the
# built-in servers are its subcommands (`mcpfleet operator`, `mcpfleet gateway`, `mcpfleet server k8s-ops`).
# Build: docker build -t mcpfleet:dev .   (docs/image.md; checked statically by tests/unit/test_dockerfile.py)

# The base is pinned to an exact patch release. A digest pins it further, to the exact bytes:
#   docker build --build-arg PYTHON_BASE_DIGEST=@sha256:<digest of python:3.11.14-slim-bookworm> .
# The digest is a build argument rather than written here because it must be read from the registry at
# release time (`docker buildx imagetools inspect python:3.11.14-slim-bookworm`), and a digest copied from
# memory that does not exist would only break the build. Both stages use the same base: the venv's
# interpreter is a link to the base image's /usr/local/bin/python3.
ARG PYTHON_BASE=python:3.11.14-slim-bookworm
ARG PYTHON_BASE_DIGEST=

FROM ${PYTHON_BASE}${PYTHON_BASE_DIGEST} AS builder
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Exactly what the wheel is built from (pyproject's package roots and readme) and the install recipe;
# .dockerignore keeps everything else out of the context.
COPY pyproject.toml README.md ./
COPY contracts/ contracts/
COPY operator/ operator/
COPY servers/ servers/
COPY cli/ cli/
COPY hack/image-install.sh hack/image-install.sh
# The same script CI runs (tests/integration/test_image_install.py): build the wheel, install it into a
# fresh venv without dev extras, and prove every module imports and every subcommand answers --help.
RUN hack/image-install.sh /opt/mcpfleet/venv /src

FROM ${PYTHON_BASE}${PYTHON_BASE_DIGEST} AS runtime
ARG VERSION=0.1.0
ARG SOURCE_URL=https://github.com/mcpfleet/mcpfleet
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mcpfleet" \
      org.opencontainers.image.description="An MCP platform for Kubernetes: the MCPServer operator, the built-in MCP servers (k8s-ops, monitoring, cmdb) and the gateway, as subcommands of one entrypoint." \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# MCPFLEET_HEALTHCHECK_URL: the URLs the HEALTHCHECK tries, healthy when any answers 2xx. The default covers
# every long-running subcommand on its default port 8080: /health for the gateway and the servers, /healthz
# for the operator (kopf's liveness endpoint). Set it when a port changes; set it empty for one-shot commands.
ENV PATH=/opt/mcpfleet/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MCPFLEET_HEALTHCHECK_URL="http://127.0.0.1:8080/health http://127.0.0.1:8080/healthz"

# Only the venv crosses over: no compiler, no wheel cache, no sources, no dev tools.
COPY --from=builder /opt/mcpfleet/venv /opt/mcpfleet/venv

# The health check uses the base image's Python (isolated: -I) and the standard library only: it works whatever
# the subcommand, costs no import of mcpfleet, and ignores proxy variables (a probe of 127.0.0.1 through a
# proxy would test the proxy).
COPY --chmod=0755 <<'EOF' /usr/local/bin/mcpfleet-healthcheck
#!/usr/local/bin/python3 -I
"""Exit 0 when any URL in MCPFLEET_HEALTHCHECK_URL (space-separated) answers 2xx, or when it is empty."""
import os
import sys
import urllib.request

opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url):
    try:
        with opener.open(url, timeout=3) as response:
            return 200 <= response.status < 300
    except (OSError, ValueError):
        return False


urls = os.environ.get("MCPFLEET_HEALTHCHECK_URL", "").split()
sys.exit(0 if not urls or any(answers(url) for url in urls) else 1)
EOF

# The uid the operator runs the built-in servers' pods as (runAsUser in their pod securityContext), numeric
# so that Kubernetes' runAsNonRoot can verify it without a passwd entry.
USER 10001:10001
WORKDIR /tmp
# 8080: MCP and /health, /ready, /metrics of the servers and the gateway; the operator's /healthz.
# 9090: the operator's /metrics.
EXPOSE 8080 9090

# Docker and compose use this; Kubernetes ignores HEALTHCHECK and uses the probes the operator and the chart
# set on each container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["mcpfleet-healthcheck"]

ENTRYPOINT ["mcpfleet"]
CMD ["--help"]
