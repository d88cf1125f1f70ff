# natgw in a small image, for the NATGW_IMAGE of examples/.gitlab-ci.yml: `natgw` on the PATH, a POSIX shell
# (GitLab runs each job's script with sh), CA certificates for TLS to Google, and no root at run time.
#
#   docker build --build-arg NATGW_GIT_COMMIT="$(git rev-parse --short=12 HEAD)" -t natgw .
#
# The base images are pinned by tag (the toolchain of Cargo.toml's rust-version, Debian 12). Pin them by
# digest too where your registry policy asks for it: README "Container image".

FROM rust:1.90-slim-bookworm AS build
WORKDIR /src
# The build context has no .git (.dockerignore): the commit for `natgw --version` comes from here.
ARG NATGW_GIT_COMMIT=unknown
ENV NATGW_GIT_COMMIT=${NATGW_GIT_COMMIT}
COPY . .
RUN cargo build --release --locked --bin natgw \
    && install -D -m 0755 target/release/natgw /out/natgw

FROM debian:bookworm-slim
# The CA bundle of the build stage (the rust image ships Debian's ca-certificates): no package manager run
# in the final image.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/natgw /usr/local/bin/natgw
RUN useradd --create-home --uid 10001 --user-group --shell /bin/sh natgw
USER 10001:10001
WORKDIR /home/natgw
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# No ENTRYPOINT: GitLab runs the job's script through the image's shell.
CMD ["natgw", "--help"]
