# kesu: the HTTP service, the Kafka consumer (`consume`) and the CLI in a small, non-root image.
#
#   docker build -t kesu:0.1.0 .            (or: podman build / buildah bud)
#   docker run -p 8080:8080 kesu:0.1.0
#
# The shipped model (models/) and word lists (lexicons/) are in the image;
# mount other ones over /opt/kesu/models or /etc/kesu/lexicons (KESU_MODEL,
# KESU_LEXICONS). State (the SQLite store, the API keys file) goes to
# /var/lib/kesu: a volume, or use PostgreSQL (KESU_DATABASE_URL).

FROM rust:1.89-slim-bookworm AS build
# librdkafka is built from the rdkafka crate's bundled source: make, pkg-config, OpenSSL headers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3* pkg-config=1.8* libssl-dev=3.0* \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY src src
COPY benches benches
COPY tests tests
RUN cargo build --release --locked --bin kesu \
    && strip target/release/kesu

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311* libssl3=3.0* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/kesu --create-home kesu
COPY --from=build /src/target/release/kesu /usr/local/bin/kesu
COPY models /opt/kesu/models
COPY lexicons /etc/kesu/lexicons
# KESU_API_KEYS_FILE is a path (the file holds key hashes), not a secret.
# hadolint ignore=DL3064
ENV KESU_HOST=0.0.0.0 \
    KESU_PORT=8080 \
    KESU_MODEL=/opt/kesu/models/kesu.gguf \
    KESU_LEXICONS=/etc/kesu/lexicons \
    KESU_DATABASE_URL=sqlite:///var/lib/kesu/kesu.db \
    KESU_API_KEYS_FILE=/var/lib/kesu/keys.toml \
    KESU_LOG_FORMAT=json
USER 10001
WORKDIR /var/lib/kesu
EXPOSE 8080
ENTRYPOINT ["kesu"]
CMD ["serve"]
