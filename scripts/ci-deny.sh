#!/usr/bin/env bash
# Supply-chain check (issue 14): licences, bans (duplicates warn, wildcards
# deny) and sources (crates.io only) of every dependency, per deny.toml.
# Installs a pinned cargo-deny if it is absent (from crates.io, ~5.5 min on
# 2 cores), downloads the locked crates (`cargo fetch`: cargo metadata needs
# every package's manifest, Windows-only ones included), then checks OFFLINE:
# no RustSec advisory database is fetched.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2

if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
  cargo install --locked "cargo-deny@$CARGO_DENY_VERSION"
fi
cargo fetch --locked
cargo deny --offline check licenses bans sources
