# random-refresher: one static binary in an otherwise empty image, for
# linux/amd64 and linux/arm64.
#
#   DOCKER_BUILDKIT=1 docker build --platform linux/arm64 -t random-refresher .
#   docker run --rm --device /dev/hwrng random-refresher once --source /dev/hwrng --sink stdout | rngtest -c 1
#
# The binary is cross-compiled on the build machine's own platform
# (BUILDPLATFORM); only the final, empty stage is of the target platform.
# BuildKit is needed (DOCKER_BUILDKIT=1 or buildx): the legacy builder does
# not set BUILDPLATFORM.
# BUILDER_IMAGE is any image with a Rust toolchain holding the
# x86_64-unknown-linux-gnu and aarch64-unknown-linux-gnu targets, a C linker
# with glibc's static libraries, and for arm64 the aarch64-linux-gnu-gcc
# cross linker with the same (Debian: gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross). The README shows one made from rust:1-bookworm.
ARG BUILDER_IMAGE=rust:1-bookworm

FROM --platform=$BUILDPLATFORM ${BUILDER_IMAGE} AS build
WORKDIR /src
# Dependencies first, in a layer of their own: sources change far more often.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/health.rs \
    && cargo fetch --locked
# Static glibc: no shared library is needed at run time. getrandom uses the
# getrandom(2) system call instead of opening /dev/urandom.
ENV RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\""
COPY build.rs ./
COPY src ./src
# The commit random_refresher_build_info reports: the context has no .git.
ARG GIT_COMMIT=
ENV RANDOM_REFRESHER_GIT_COMMIT=${GIT_COMMIT}
ARG TARGETARCH
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
RUN case "$TARGETARCH" in \
        amd64) target=x86_64-unknown-linux-gnu ;; \
        arm64) target=aarch64-unknown-linux-gnu ;; \
        *) echo "TARGETARCH '$TARGETARCH': only amd64 and arm64 are built" >&2; exit 1 ;; \
    esac \
    && cargo build --release --locked --offline --target "$target" --bin random-refresher \
    && cp "target/$target/release/random-refresher" /random-refresher

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="random-refresher" \
      org.opencontainers.image.description="Health-tests the node's hardware RNG and refreshes the kernel entropy pool with tested bytes only" \
      org.opencontainers.image.source="https://github.com/random-refresher/random-refresher" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /random-refresher /random-refresher
EXPOSE 9742
# The daemon's own probe: no shell in the image to run anything else.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/random-refresher", "probe"]
# Root, because /dev/hwrng is readable by root only and the kernel sink needs
# CAP_SYS_ADMIN; `docker run` grants neither unless asked (--device,
# --cap-add), and the daemon holds nothing else. See the README.
ENTRYPOINT ["/random-refresher"]
CMD ["run"]
