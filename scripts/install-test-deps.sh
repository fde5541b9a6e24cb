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

# Containers: podman (the container tests and benches use it; never skipped), runc and
# catatonit (`--init`), debootstrap for the image's base (no container registry is
# reachable in CI: the base is made locally from Debian's packages).
missing=()
for tool in podman:podman runc:runc catatonit:catatonit debootstrap:debootstrap; do
  command -v "${tool%%:*}" >/dev/null || [[ -x "/usr/libexec/podman/${tool%%:*}" ]] || missing+=("${tool##*:}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  need_root "${missing[*]}"
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# podman's defaults fail on hosts mixing cgroup v1/v2 (crun) or without
# CAP_SYS_RESOURCE (nofile=1048576): a config of our own, used through CONTAINERS_CONF
# (scripts/test-env.sh exports it), leaves /etc alone.
mkdir -p "$RUST_CLAW_CACHE"
conf="$RUST_CLAW_CACHE/containers.conf"
nofile="$(ulimit -Hn)"
[[ "$nofile" == unlimited || "$nofile" -gt 1048576 ]] && nofile=1048576
nproc="$(ulimit -Hu)"
[[ "$nproc" == unlimited || "$nproc" -gt 32768 ]] && nproc=32768
want="[containers]
default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]
[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
events_logger = \"file\""
if [[ ! -f "$conf" || "$(cat "$conf")" != "$want" ]]; then
  printf '%s\n' "$want" > "$conf"
fi
export CONTAINERS_CONF="$conf"

# The agent image, from container/Containerfile, with the rust_claw the tests build.
echo "building rust_claw for the agent image"
# Exactly what scripts/test.sh then builds (same features, so the same binary).
cargo test --locked --all-targets --no-run --quiet
start=$(date +%s)
RUST_CLAW_CACHE_IMAGE=1 scripts/build-image.sh --local-base --binary target/debug/rust_claw
echo "agent image ready ($(( $(date +%s) - start )) s)"
