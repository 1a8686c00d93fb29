#!/usr/bin/env bash
# Installs everything cod needs on Debian 12 (as root), idempotently, and starts the Docker engine.
# Only package registries are reachable: Debian, PyPI, npm and the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KUBO_VERSION=v0.42.0   # v0.43 pins a go-libp2p fork that the Go proxy does not serve
log() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }

# --- Debian packages --------------------------------------------------------------------------
APT_PACKAGES=(docker.io redis-server busybox-static iproute2 git postgresql e2fsprogs mount)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The Debian redis-server package starts a system instance; cod starts its own on other ports.

# --- Docker engine ----------------------------------------------------------------------------
# A machine made from an image of one where dockerd ran can carry its stale pid files, which stop a
# new dockerd at once; a machine whose kernel lacks what dockerd's defaults use (nftables for the
# bridge's NAT rules, overlayfs on the root's filesystem) stops it too. cod's containers run with no
# network and its images are small, so each fallback drops one of these defaults.
DOCKERD_LOG=/var/log/cod-dockerd.log
dockerd_up() { docker info >/dev/null 2>&1; }
start_dockerd() {  # start_dockerd [flags...]: 0 once the engine answers, 1 if dockerd exited or stalled
  rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
  log "starting dockerd ${*:-with its defaults}"
  echo "--- dockerd $* ($(date -u +%FT%TZ))" >>"$DOCKERD_LOG"
  nohup dockerd "$@" >>"$DOCKERD_LOG" 2>&1 &
  local pid=$!
  for _ in $(seq 1 180); do
    dockerd_up && return 0
    kill -0 "$pid" 2>/dev/null || { log "dockerd exited:"; grep -v "level=info" "$DOCKERD_LOG" | tail -n 15 >&2; return 1; }
    sleep 1
  done
  log "dockerd did not answer in 180 s:"; grep -v "level=info" "$DOCKERD_LOG" | tail -n 15 >&2
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  return 1
}
if ! dockerd_up; then
  if pgrep -x dockerd >/dev/null; then   # one is starting already: give it the same time
    for _ in $(seq 1 180); do dockerd_up && break; pgrep -x dockerd >/dev/null || break; sleep 1; done
    dockerd_up || { pkill -x dockerd || true; sleep 2; }
  fi
  dockerd_up \
    || start_dockerd \
    || start_dockerd --iptables=false --ip6tables=false \
    || start_dockerd --iptables=false --ip6tables=false --storage-driver=vfs \
    || { echo "dockerd did not start; its log: $DOCKERD_LOG" >&2; exit 1; }
fi

# --- Kubo (IPFS), built from source through the Go module proxy -------------------------------
if ! command -v ipfs >/dev/null || [[ "$(ipfs version --number 2>/dev/null)" != "${KUBO_VERSION#v}" ]]; then
  command -v go >/dev/null || { echo "Go is needed to build Kubo; install Go >= 1.25" >&2; exit 1; }
  log "building Kubo ${KUBO_VERSION} (a few minutes, once)"
  dir=$(go mod download -json "github.com/ipfs/kubo@${KUBO_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  (cd "$dir" && go build -trimpath -o /usr/local/bin/ipfs ./cmd/ipfs)
fi

# --- Node: Hardhat, solcjs, anvil -------------------------------------------------------------
if [[ ! -f node_modules/.package-lock.json ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "installing contract tooling (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

# --- Python -----------------------------------------------------------------------------------
stamp=.venv/.cod-installed
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  python3 -m venv .venv || { apt-get install -y -q python3-venv && python3 -m venv .venv; }
fi
if [[ ! -f $stamp ]] || [[ pyproject.toml -nt $stamp ]]; then
  log "installing the cod Python package"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi

# --- Local images (no registry is reachable) --------------------------------------------------
.venv/bin/python -c 'from devstack.images import ensure_busybox_image; ensure_busybox_image()'
log "ready: $(ipfs version) · $(docker version --format 'docker {{.Server.Version}}') · $(.venv/bin/python --version)"
