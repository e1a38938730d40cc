# syntax=docker/dockerfile:1
# Multi-stage build of the one `chronicle` binary; every mode (controller,
# workers, serve) runs from this image.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin chronicle \
    && cp target/release/chronicle /chronicle

# Distroless: glibc and CA certificates, no shell, non-root (uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /chronicle /usr/local/bin/chronicle
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/chronicle"]
