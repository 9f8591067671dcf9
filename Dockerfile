# Build: docker build -t themis .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY openapi.yaml ./
COPY benches ./benches
RUN cargo build --release --locked --bin themis

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/themis /usr/local/bin/themis
COPY examples /examples
ENV THEMIS_ADDR=0.0.0.0:8080 THEMIS_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["themis"]
CMD ["serve"]
