#!/usr/bin/env bash
# Builds the agent container image (container/Containerfile) with podman or docker.
#
#   scripts/build-image.sh                       release-build rust_claw, build the image
#   scripts/build-image.sh --binary PATH         use this rust_claw executable instead
#   scripts/build-image.sh --local-base          no registry: make a Debian bookworm base
#                                                locally (debootstrap, cached) and use it
#   scripts/build-image.sh --base IMAGE          any other Debian bookworm base image
#
# Environment: CONTAINER_RUNTIME (auto|podman|docker), CONTAINER_IMAGE (the tag, default
# rust-claw-codex-agent:latest), RUST_CLAW_CACHE (default ~/.cache/rust_claw).
# The host's extra CA certificates (/usr/local/share/ca-certificates/*.crt) go into the
# image when present: npm inside the build needs them on TLS-inspecting networks.
# Does nothing when the image is already built from the same inputs.
set -euo pipefail
cd "$(dirname "$0")/.."

CODEX_VERSION="0.169.0" # the same pin as scripts/test-env.sh
TAG="${CONTAINER_IMAGE:-rust-claw-codex-agent:latest}"
CACHE="${RUST_CLAW_CACHE:-$HOME/.cache/rust_claw}"
LOCAL_BASE="localhost/rust-claw-bookworm-minbase:latest"
binary="${RUST_CLAW_BIN:-}"
base=""
local_base=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --base) base="$2"; shift 2 ;;
    --local-base) local_base=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

case "${CONTAINER_RUNTIME:-auto}" in
  auto)
    if command -v podman >/dev/null; then rt=podman
    elif command -v docker >/dev/null; then rt=docker
    else echo "error: neither podman nor docker is installed; install one (Debian: apt-get install podman)" >&2; exit 1
    fi ;;
  podman|docker) rt="$CONTAINER_RUNTIME" ;;
  *) echo "error: CONTAINER_RUNTIME must be auto, podman or docker" >&2; exit 2 ;;
esac

if [[ -z "$binary" ]]; then
  echo "==> cargo build --release (the rust_claw inside the image)"
  cargo build --release --locked --bin rust_claw
  binary=target/release/rust_claw
fi
[[ -x "$binary" ]] || { echo "error: $binary is not an executable" >&2; exit 1; }
ipc_version="$("$binary" agent-tools --ipc-version)"

if [[ $local_base == 1 ]]; then
  base="$LOCAL_BASE"
  if ! "$rt" image exists "$base" 2>/dev/null && ! "$rt" image inspect "$base" >/dev/null 2>&1; then
    tarball="$CACHE/base/bookworm-minbase.tar"
    if [[ ! -s "$tarball" ]]; then
      command -v debootstrap >/dev/null || { echo "error: --local-base needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
      echo "==> debootstrap --variant=minbase bookworm (once; cached in $tarball)"
      mkdir -p "$CACHE/base"
      rootfs="$(mktemp -d "$CACHE/base/rootfs.XXXXXX")"
      debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
      tar -C "$rootfs" -cf "$tarball.tmp" .
      rm -rf "$rootfs"
      mv "$tarball.tmp" "$tarball"
    fi
    echo "==> importing the base image $base"
    "$rt" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      "$tarball" "$base" >/dev/null
  fi
fi
base="${base:-docker.io/library/debian:bookworm-slim}"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp container/Containerfile "$ctx/Containerfile"
cp "$binary" "$ctx/rust_claw"
mkdir "$ctx/certs"
shopt -s nullglob
for crt in /usr/local/share/ca-certificates/*.crt; do cp "$crt" "$ctx/certs/"; done
shopt -u nullglob

have_image() { "$rt" image inspect "$1" >/dev/null 2>&1; }
hash_of() { sha256sum | cut -c1-32; }

# Stage 1, `agent-deps` (Debian packages, codex, the user; minutes to build): keyed by
# everything that goes into it, and cached as a tarball across runs when
# RUST_CLAW_CACHE_IMAGE=1 (CI).
# (A local base is identified by its cached tarball: each import gets a new image id.)
if [[ $local_base == 1 ]]; then
  base_id="$(stat -c '%s-%Y' "$CACHE/base/bookworm-minbase.tar" 2>/dev/null || echo imported)"
else
  base_id="$("$rt" image inspect --format '{{.Id}}' "$base" 2>/dev/null || echo "$base")"
fi
deps_key="$( (echo "$CODEX_VERSION $base $base_id"
              cd "$ctx" && sha256sum Containerfile && find certs -type f -print0 | sort -z | xargs -0 -r sha256sum) | hash_of)"
deps="localhost/rust-claw-agent-deps:$deps_key"
if ! have_image "$deps"; then
  saved="$CACHE/images/agent-deps-$deps_key.tar"
  if [[ -s "$saved" ]]; then
    echo "==> loading $deps from $saved"
    "$rt" load -i "$saved" >/dev/null
  fi
  if ! have_image "$deps"; then
    echo "==> $rt build --target agent-deps (base $base, codex $CODEX_VERSION)"
    start=$(date +%s)
    "$rt" build --network=host --target agent-deps \
      --build-arg "BASE=$base" --build-arg "CODEX_VERSION=$CODEX_VERSION" \
      -t "$deps" -f "$ctx/Containerfile" "$ctx"
    echo "built $deps in $(( $(date +%s) - start )) s"
    if [[ "${RUST_CLAW_CACHE_IMAGE:-0}" == 1 ]]; then
      mkdir -p "$CACHE/images"
      rm -f "$CACHE"/images/agent-deps-*.tar
      "$rt" save -o "$saved.tmp" "$deps" && mv "$saved.tmp" "$saved"
    fi
  fi
fi

# Stage 2, the image: the dependencies plus this rust_claw (seconds).
key="$( (echo "$deps_key $ipc_version"; sha256sum < "$ctx/rust_claw") | hash_of)"
current="$("$rt" image inspect --format '{{index .Config.Labels "io.rust-claw.build-key"}}' "$TAG" 2>/dev/null || true)"
if [[ "$current" == "$key" ]]; then
  echo "$TAG is up to date (build key $key)"
  exit 0
fi
echo "==> $rt build -t $TAG (IPC version $ipc_version)"
start=$(date +%s)
"$rt" build --network=host \
  --build-arg "DEPS=$deps" \
  --build-arg "CODEX_VERSION=$CODEX_VERSION" \
  --build-arg "IPC_VERSION=$ipc_version" \
  --label "io.rust-claw.build-key=$key" \
  -t "$TAG" -f "$ctx/Containerfile" "$ctx"
echo "built $TAG in $(( $(date +%s) - start )) s"
