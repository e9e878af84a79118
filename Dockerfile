# kvd's container image: kvd and kvctl from the Debian package, on Debian 12 slim, run as the
# unprivileged kvd user. Two stages: the first compiles kvd and makes the package
# (deploy/package), the second installs that package, so the image holds only the runtime
# libraries the package depends on.
#
#   DOCKER_BUILDKIT=0 docker build --network host -t kvd .
#
# The image's entry point is kvd: `docker run kvd --name ... --initial-cluster ...`, or
# `--proxy on`; kvctl is there too (`docker run --entrypoint kvctl kvd ...`). A package already
# built (deploy/package/build-deb.sh) makes the same image in seconds with
# deploy/docker/Dockerfile.deb.
FROM debian:bookworm-slim AS build
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      build-essential cmake ninja-build pkg-config dpkg-dev file git \
      libboost-dev libboost-program-options-dev librocksdb-dev nlohmann-json3-dev libspdlog-dev \
      libgoogle-perftools-dev libssl-dev libcrypt-dev libyaml-cpp-dev libprotobuf-dev \
      protobuf-compiler libgtest-dev libgmock-dev libbenchmark-dev
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
 && cmake --build /build --target kvd kvctl -j"$(nproc)" \
 && cd /build && cpack -G DEB && mkdir /deb && cp /build/kvd_*.deb /deb/

FROM debian:bookworm-slim
COPY --from=build /deb/ /tmp/deb/
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      /tmp/deb/kvd_*.deb \
 && rm -rf /var/lib/apt/lists/* /tmp/deb
USER kvd
WORKDIR /var/lib/kvd
EXPOSE 2379 2380
ENTRYPOINT ["/usr/bin/kvd"]
