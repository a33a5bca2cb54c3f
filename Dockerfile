# syntax=docker/dockerfile:1
# plughost's official image: the gateway on Alpine, every native plugin built against musl.
#
#   docker build -t plughost .
#   docker run --rm -p 8090:8090 plughost                      # the baked sample in /configs
#   docker run --rm -p 8090:8090 -v "$PWD/myconf:/configs:ro" plughost
#   docker compose up                                          # with Valkey: docker-compose.yaml
#
# Stage "builder" builds plughost's wheel (its cffi runtime, the _fastpath extension and every
# plugin of native_plugins/, built with CMake against musl) and installs it into the
# virtualenv /opt/venv, then `plughost check --target linux-<arch>-musl` refuses to go on
# unless every bundled plugin is loadable on the musl target it was built for. The runtime
# stage holds the venv, /configs and the C libraries the plugins link, and runs as an
# unprivileged user. Configurations name the bundled plugins (`- name: session`).
# The same musl build can be reproduced outside Docker:
#   python build_plugins.py --target linux-x86_64-musl     (host/plughost/cmake/toolchains/, musl-gcc or zig)

ARG PYTHON_IMAGE=python:3.13-alpine3.22

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# C toolchain and CMake, libffi for cffi; the libraries plugins link: OpenSSL (valkey's TLS,
# jwt, basicauth), libxcrypt (basicauth), jansson and libcurl (jwt, opentelemetry). hiredis
# (valkey) is compiled in from the sources tools/fetch_hiredis.py fetches from PyPI.
RUN apk add --no-cache \
        build-base \
        cmake \
        curl-dev \
        jansson-dev \
        libffi-dev \
        libxcrypt-dev \
        linux-headers \
        openssl-dev

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv

WORKDIR /src

# One wheel, as `pip install plughost` gets it: the host and every plugin of native_plugins/
# (built by CMake during the wheel build, here against musl), installed into the venv; then
# the static check of the bundled plugins for the musl target of this build's architecture
# (linux-x86_64-musl on amd64, linux-aarch64-musl on arm64).
COPY pyproject.toml setup.py MANIFEST.in README.md CMakeLists.txt build_plugins.py ./
COPY abi/ abi/
COPY tools/ tools/
COPY host/ host/
COPY native_plugins/ native_plugins/
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install --no-cache-dir /wheels/plughost-*.whl \
 && plughost info \
 && plughost check --target "linux-$(uname -m)-musl" "$(plughost info --plugins-dir)"

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="plughost" \
      org.opencontainers.image.description="API-gateway host whose middlewares, actions and storages are native C plugins" \
      org.opencontainers.image.licenses="Apache-2.0"

# The shared libraries the plugins link (libssl/libcrypto and libffi come with the base image),
# and the IANA zone files the logger's timeZone reads.
RUN apk add --no-cache \
        jansson \
        libcurl \
        libxcrypt \
        tzdata \
 && addgroup -S -g 10001 plughost \
 && adduser -S -D -H -u 10001 -G plughost -s /sbin/nologin plughost

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Owned by root and not writable by the gateway's user: plughost refuses plugin files and
# folders that group or others can write.
COPY --from=builder /opt/venv /opt/venv
COPY docker/configs/ /configs/

# Every plugin must load (and initialise) in this stage's C library and libraries, not only
# pass the static check in the builder.
RUN plughost check --load "$(plughost info --plugins-dir)" \
 && plughost check --config /configs

USER 10001:10001
WORKDIR /configs
EXPOSE 8090

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8090/health/live"]

CMD ["plughost", "serve", "--config", "/configs"]
