#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh
# machine, then runs the format check, clippy and every workspace test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v tshark >/dev/null 2>&1 || need_apt+=(tshark)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
# The kernel datapath marks flows and counts tunnelled packets with nftables.
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
# The SVG ladder is checked in a real browser (headless Chromium).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "ci/test.sh: installing ${need_apt[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The JUnit tests read pmiplab's junit.xml as CI does: Python's strict
# XML parser and junitparser, a standard JUnit consumer.
if ! python3 -c 'import junitparser' >/dev/null 2>&1; then
    echo "ci/test.sh: installing junitparser from PyPI"
    python3 -m pip install --quiet junitparser 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages junitparser
fi

# ... and validate it against the common JUnit XSD (Jenkins' junit-10.xsd),
# which pytest's source distribution ships for its own tests: xmlschema
# reads it, and the file is fetched once into target/ci-cache.
if ! python3 -c 'import xmlschema' >/dev/null 2>&1; then
    echo "ci/test.sh: installing xmlschema from PyPI"
    python3 -m pip install --quiet xmlschema 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages xmlschema
fi
xsd=target/ci-cache/junit-10.xsd
if [ ! -s "$xsd" ]; then
    echo "ci/test.sh: fetching the JUnit XSD from pytest's source distribution on PyPI"
    mkdir -p target/ci-cache
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$tmp" pytest==9.2.0
    tar -xzf "$tmp"/pytest-9.2.0.tar.gz -C "$tmp" pytest-9.2.0/testing/example_scripts/junit-10.xsd
    cp "$tmp"/pytest-9.2.0/testing/example_scripts/junit-10.xsd "$xsd"
fi
export PMIPLAB_JUNIT_XSD="$PWD/$xsd"

# The snapshot review tool: tests check that pending snapshots reach it.
if ! cargo insta --version >/dev/null 2>&1; then
    echo "ci/test.sh: installing cargo-insta from crates.io"
    cargo install --locked --quiet cargo-insta --version 1.49.0
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
# The namespace tests build labs with real daemons and time-bound
# expectations; one lab at a time keeps them deterministic on 2 cores.
cargo test --workspace --exclude pmip-node
cargo test -p pmip-node -- --test-threads=1

# The catalogue in namespaces on each datapath, and with pmip-node under test.
if [ "$(id -u)" -ne 0 ] && [ -n "${PMIPLAB_SKIP_NETNS:-}" ]; then
    echo "== the catalogue in namespaces: skipped (not root, PMIPLAB_SKIP_NETNS set)"
else
    cargo build --quiet -p pmip-node -p pmiplab
    # Done when of issue 13: the catalogue on each datapath, chosen by the
    # flag: the kernel one (a daemon that cannot run it fails to start)
    # and the userspace fallback.
    for datapath in kernel userspace; do
        echo "== the catalogue on the $datapath datapath"
        PMIP_NODE="$PWD/target/debug/pmip-node" target/debug/pmiplab --datapath "$datapath" run --backend netns -j 2 \
            --out "target/datapath-$datapath" 'topologies/*.yaml'
    done
    # Done when of issue 10: the catalogue with pmip-node as an implementation
    # under test, driven only from outside (ci/iut/pmip-node-iut: the
    # hand-over, no harness control socket), as every MAG and, separately, as
    # the LMA.
    for role in mag lma; do
        echo "== the catalogue with pmip-node under test as $role"
        PMIP_NODE="$PWD/target/debug/pmip-node" target/debug/pmiplab run --backend netns -j 2 \
            --iut "$role=ci/iut/pmip-node-$role.yaml" --out "target/iut-$role" 'topologies/*.yaml'
    done
fi
