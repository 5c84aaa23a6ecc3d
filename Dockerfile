# Build: a release binary with no libpq and no OpenSSL (pure-Rust PostgreSQL protocol, rustls).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Every workspace member's manifest must be present for cargo to load the workspace.
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY src ./src
COPY migrations ./migrations
COPY bench ./bench
RUN cargo build --release --locked --bin joyfull-hub

# Run: a small image, an unprivileged user, data under /data.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --home-dir /data --create-home hub
COPY --from=build /src/target/release/joyfull-hub /usr/local/bin/joyfull-hub
USER hub
WORKDIR /data
ENV HUB_LISTEN=0.0.0.0:8000 \
    HUB_DATA_DIR=/data \
    HUB_ENV=production
EXPOSE 8000
STOPSIGNAL SIGTERM
ENTRYPOINT ["joyfull-hub"]
CMD ["serve"]
