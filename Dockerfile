# syntax=docker/dockerfile:1
# heal: a static binary in an otherwise empty image.
#   docker build -t ghcr.io/heal-project/heal:0.1.0 .
# The same image also carries heald (the injector); its Deployment sets `command: [heald]`.

FROM rust:1.95-alpine3.22 AS build
RUN apk add --no-cache musl-dev ca-certificates
WORKDIR /src
COPY . .
# Alpine's Rust targets musl: the binaries are statically linked. relocation-model=static
# makes them static non-PIE executables, which apply no relocations when they start (a
# static-pie heal relocates 280 KiB at every step; docs/benchmarks.md). The target is named
# so that RUSTFLAGS reach only the binaries, not the build's proc-macros.
RUN host="$(rustc -vV | sed -n 's/^host: //p')" \
 && RUSTFLAGS="-C relocation-model=static" cargo build --release --locked --bins --target "$host" \
 && mkdir -p /out \
 && for b in heal heald; do [ -f "target/$host/release/$b" ] && cp "target/$host/release/$b" /out/; done; \
    ls -l /out

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="heal" \
      org.opencontainers.image.description="Alert-driven, self-healing remediation steps for Kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/heal-project/heal"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/ /usr/local/bin/
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/heal"]
