# outbox-relay container image.
#
#   docker build -t outbox-relay .
#   docker run --rm -p 9464:9464 \
#     -v "$PWD/config/outbox.toml:/etc/outbox-relay/config.toml:ro" \
#     -e AWS_REGION -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_SESSION_TOKEN \
#     outbox-relay
#
# The build stage compiles a static glibc binary (no libc needed at run time); the runtime
# stage is `scratch` with only that binary and a CA bundle, running as a non-root user.
# Credentials come from the environment, the ECS task role or IRSA — never from the image.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --locked --bin outbox-relay --target x86_64-unknown-linux-gnu \
    && mkdir -p /out/etc/ssl/certs /out/etc/outbox-relay \
    && cp target/x86_64-unknown-linux-gnu/release/outbox-relay /out/outbox-relay \
    && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt

FROM scratch AS runtime
LABEL org.opencontainers.image.title="outbox-relay" \
      org.opencontainers.image.description="Relays DynamoDB Streams outbox rows to Amazon EventBridge" \
      org.opencontainers.image.source="https://github.com/outbox-relay/outbox-relay" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ /
ENV OUTBOX_RELAY_CONFIG=/etc/outbox-relay/config.toml \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/outbox-relay", "healthcheck"]
ENTRYPOINT ["/outbox-relay"]
CMD ["run"]
