#!/usr/bin/env bash
# Installs what kvd needs to build, test and benchmark on Debian 12 (all Debian packages),
# including the real etcd used as the reference in the end-to-end tests, and nginx for the
# switchover demo (deploy/switchover-demo.sh, run by tests/e2e/test_proxy_switchover.py),
# iproute2 and iptables for the fault tests' network namespaces (tests/faults), and python3-fusepy
# for the data dir that turns read-only in tests/e2e/test_full_disk.py (tests/e2e/readonly_fs.py).
# prometheus (and its promtool) scrape kvd and check its alerting rules in tests/e2e/test_metrics.py;
# libprotobuf-dev and protobuf-compiler read etcd's data dirs for kvctl migrate (etcd_data/).
# TLS is OpenSSL (libssl-dev); the TLS tests make their certificates with the openssl command and
# trust the system's roots through ca-certificates. v2 auth hashes passwords with libcrypt's
# bcrypt (libcrypt-dev). kvd reads etcd's YAML config file with libyaml-cpp-dev. The package test
# (tests/e2e/test_package.py) builds the .deb with cpack (dpkg-dev, file) and installs it into a
# fresh Debian root made with mmdebstrap; tests/e2e/test_docker.py runs a Docker daemon of its
# own (docker.io) and the compose topology (docker-compose). The discovery tests run a real DNS
# server (dnsmasq-base) in network namespaces and an HTTP forward proxy (privoxy) for
# --discovery-proxy.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
  build-essential cmake ninja-build pkg-config \
  libboost-dev libboost-program-options-dev librocksdb-dev nlohmann-json3-dev libspdlog-dev \
  libgoogle-perftools-dev libssl-dev openssl ca-certificates libcrypt-dev libyaml-cpp-dev \
  libprotobuf-dev protobuf-compiler \
  libgtest-dev libgmock-dev libbenchmark-dev \
  etcd-server etcd-client python3 python3-etcd python3-fusepy curl wrk bc nginx-light iproute2 \
  iptables prometheus dpkg-dev file mmdebstrap docker.io docker-compose dnsmasq-base privoxy
