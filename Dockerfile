# syntax=docker/dockerfile:1
# One image for all four binaries: backend, worker, frontend, loadtest. It has no ENTRYPOINT;
# the command picks the role, e.g. `docker run IMAGE frontend --help` (docker-compose.yml
# sets one per service). Every option is also an env var: FLASHSALE_<OPTION>.

# --- Toolchain + cargo-chef (pinned: the recipe format belongs to the version) -----------
# The toolchain is the workspace's rust-version (Cargo.toml), never a floating `rust:1`: a
# machine with an older `rust:1` cached would build with that. Change both together
# (scripts/check_compose.py fails when they differ).
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

# --- Recipe: the workspace's manifests and lock file, without the sources ----------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- Build: dependencies in their own layer, rebuilt only when the recipe changes --------
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked \
    && mkdir /out \
    && cp target/release/backend target/release/worker target/release/frontend \
        target/release/loadtest /out/

# --- Runtime: small Debian (same release as the builder, so glibc matches) ---------------
FROM debian:bookworm-slim
# ca-certificates for TLS to external services, curl for the compose healthchecks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
# Unprivileged user; /data is its writable working directory (the embedded store's default
# file lands there when no FLASHSALE_STORE is given).
RUN useradd --system --uid 10001 --user-group --home-dir /data --create-home \
        --shell /usr/sbin/nologin flashsale
COPY --from=builder /out/ /usr/local/bin/
USER flashsale
WORKDIR /data
ENV RUST_LOG=info
# backend :3000, frontend :5000 (documentation only; compose publishes what it needs)
EXPOSE 3000 5000
CMD ["backend", "--help"]
