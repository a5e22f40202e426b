# closure-monitor worker image: docker compose builds it for worker-1, worker-2
# and the demo producer (see docker-compose.yml).
#
# Stage 1 builds the wheel, engine included (a Rust crate, engine/, built by maturin);
# stage 2 installs it with no compiler in the image.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CARGO_HOME=/opt/cargo RUSTUP_HOME=/opt/rustup PATH=/opt/cargo/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gcc libc6-dev \
    && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
       | sh -s -- -y --profile minimal --default-toolchain stable \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# pyproject.toml names README.md as the package readme (the glob only keeps
# COPY from failing on a tree without it).
COPY pyproject.toml README.md* ./
COPY engine ./engine
COPY streams ./streams
COPY deploy/policies ./deploy/policies
RUN pip wheel --wheel-dir /wheels ".[rocksdb]"

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels closure-monitor[rocksdb] && rm -rf /wheels

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
