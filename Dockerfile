# syntax=docker/dockerfile:1
# ehrlift in a container: `docker build -t ehrlift .` then
#   docker run --rm ehrlift run /opt/ehrlift/mappings/PLAN/ehrlift.toml --dest s3://BUCKET/PREFIX ...
# The shipped plans are under /opt/ehrlift/mappings; a site's own plans go in an image
# built FROM this one (infra/README.md). The runtime image has no shell and runs as a
# non-root user; ehrlift is the entrypoint, so the container's arguments are ehrlift's.

FROM rust:1.95-slim-bookworm AS builder
# aws-lc-sys (through rustls' aws-lc-rs provider), libsqlite3-sys (bundled) and zstd-sys
# compile C and C++ here. On x86_64/aarch64 Linux aws-lc-rs needs only a C/C++ compiler
# (its pregenerated bindings mean no bindgen/clang); cmake is its fallback builder and
# perl is used by some of its build paths, so both are installed to keep a version bump
# from breaking the image build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make cmake perl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY vendor vendor
COPY crates crates
# Cache mounts keep the registry and the target directory between builds (BuildKit):
# an edit to one crate rebuilds that crate and the binary, not the dependency graph.
# The binary is copied out because a cache mount is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ehrlift-cli \
 && install -D -m 0755 target/release/ehrlift /out/ehrlift

# The binary links glibc (Debian 12's, like the builder), so distroless cc, which also
# carries CA certificates and tzdata. :nonroot runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/ehrlift /usr/local/bin/ehrlift
# The shipped plans and their fake demo data (mappings/demo/data is generated, not PHI).
COPY --chown=0:0 mappings /opt/ehrlift/mappings
ENV TMPDIR=/tmp
WORKDIR /tmp
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ehrlift"]
CMD ["--help"]
