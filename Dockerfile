# closure-monitor worker image: docker compose builds it for worker-1, worker-2
# and the demo producer (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# pyproject.toml names README.md as the package readme (the glob only keeps
# COPY from failing on a tree without it).
COPY pyproject.toml README.md* ./
COPY streams ./streams
RUN pip install ".[rocksdb]"

# Non-root; owns the RocksDB data dir so a fresh named volume mounted there
# inherits that ownership.
RUN useradd --system --uid 10001 --user-group --create-home closure \
    && mkdir -p /var/lib/closure-monitor \
    && chown closure:closure /var/lib/closure-monitor
USER closure
WORKDIR /var/lib/closure-monitor

EXPOSE 6066
ENTRYPOINT ["closure-monitor"]
CMD ["worker", "--broker", "kafka://kafka:9092", "--store", "rocksdb", "--data-dir", "/var/lib/closure-monitor", "--web-port", "6066"]
