#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then runs
# formatting, lints and every test. Idempotent; fast when everything is installed.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    skip installs (for iterating; CI never passes it)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

step() { printf '\n==> %s\n' "$*"; }

if [[ $quick == 0 ]]; then
  step "installing test dependencies"
  scripts/install-test-deps.sh
fi
# shellcheck disable=SC1091
source scripts/test-env.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test"
cargo test --all-targets --locked --no-fail-fast
