# Sourced by the test scripts: pinned versions and where the test tools live.
# The codex version is pinned here and in container/; upgrade both deliberately.
export CODEX_VERSION="0.169.0"
export RUST_CLAW_CACHE="${RUST_CLAW_CACHE:-$HOME/.cache/rust_claw}"
export CODEX_PREFIX="$RUST_CLAW_CACHE/codex-$CODEX_VERSION"
# The static binary (0.02 s to start) instead of the node shim (0.2 s).
export RUST_CLAW_TEST_CODEX="$CODEX_PREFIX/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"
# podman configured for this host by install-test-deps.sh (runc, ulimits it may set).
if [[ -z "${CONTAINERS_CONF:-}" && -f "$RUST_CLAW_CACHE/containers.conf" ]]; then
  export CONTAINERS_CONF="$RUST_CLAW_CACHE/containers.conf"
fi
# The agent image the container tests run.
export RUST_CLAW_TEST_IMAGE="${RUST_CLAW_TEST_IMAGE:-rust-claw-codex-agent:latest}"
