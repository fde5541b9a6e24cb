#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine. Safe to run again: each step
# checks first and does nothing when its tool is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/test-env.sh

need_root() {
  if [[ $(id -u) != 0 ]]; then
    echo "error: installing $1 needs root (apt-get); run as root or install it yourself" >&2
    exit 1
  fi
}

# Rust components used by the checks.
for comp in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$comp"; then
    rustup component add "$comp"
  fi
done

# The pinned codex CLI, from npm, into a cache shared by every checkout on this machine.
if [[ ! -x "$RUST_CLAW_TEST_CODEX" ]]; then
  command -v npm >/dev/null || { echo "error: npm is required to install codex $CODEX_VERSION" >&2; exit 1; }
  echo "installing @openai/codex@$CODEX_VERSION into $CODEX_PREFIX"
  mkdir -p "$CODEX_PREFIX"
  npm install --no-audit --no-fund --prefix "$CODEX_PREFIX" "@openai/codex@$CODEX_VERSION" >/dev/null
fi
"$RUST_CLAW_TEST_CODEX" --version

# systemd-analyze: tests verify the unit `rust_claw service install` writes.
if ! command -v systemd-analyze >/dev/null; then
  need_root "systemd (for systemd-analyze)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
