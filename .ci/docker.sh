#!/usr/bin/env bash
# A real Docker engine for the hosted-server tests, on a machine without systemd:
#   .ci/docker.sh up     install docker.io/debootstrap/iptables if missing, start dockerd, wait
#   .ci/docker.sh down   remove what the tests made (labelled mcpnest.*), stop dockerd by its PID,
#                        drop the iptables tables and bridges dockerd leaves behind
# See ../shared/docs/hosting/README.md for why each step is there.
set -euo pipefail
STATE=${MCPNEST_DOCKER_STATE:-/tmp/mcpnest-ci-docker}
POOL=10.213.0.0/16  # keep clear of the resolver's and eth0's addresses; ~256 /24 networks
mkdir -p "$STATE"

up() {
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! command -v iptables >/dev/null; then
    echo "== installing docker.io, debootstrap, iptables"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends \
      docker.io iptables nftables debootstrap >/dev/null
  fi
  if docker info >/dev/null 2>&1; then echo "dockerd already answers"; return; fi
  [ -f "$STATE/ip_forward.orig" ] || sysctl -n net.ipv4.ip_forward >"$STATE/ip_forward.orig"
  nohup dockerd --default-address-pool "base=$POOL,size=24" >"$STATE/dockerd.log" 2>&1 </dev/null &
  echo $! >"$STATE/dockerd.pid"
  for _ in $(seq 1 300); do docker info >/dev/null 2>&1 && break; sleep 0.1; done
  docker info >/dev/null 2>&1 || { tail -20 "$STATE/dockerd.log"; exit 1; }
  echo "dockerd $(docker version --format '{{.Server.Version}}') ready (pid $(cat "$STATE/dockerd.pid"))"
}

down() {
  if docker info >/dev/null 2>&1; then
    docker ps -aq --filter label=mcpnest.instance | xargs -r docker rm -f >/dev/null
    docker network ls -q --filter label=mcpnest.workspace | xargs -r docker network rm >/dev/null
  fi
  if [ -s "$STATE/dockerd.pid" ]; then
    pid=$(cat "$STATE/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$STATE/dockerd.pid"
    # dockerd leaves its tables, bridges and ip_forward=1 behind (this machine had none before).
    if command -v nft >/dev/null; then
      for t in "ip nat" "ip filter" "ip6 filter" "ip6 nat"; do nft delete table $t 2>/dev/null || true; done
    fi
    sysctl -qw net.ipv4.ip_forward="$(cat "$STATE/ip_forward.orig" 2>/dev/null || echo 0)" || true
    for br in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^(docker0|mcpbr[0-9a-f]+|br-[0-9a-f]{12})$' || true); do
      ip link del "$br" 2>/dev/null || true
    done
    pgrep -x containerd >/dev/null || rm -rf /run/containerd /run/docker
  fi
}

"${1:?usage: .ci/docker.sh up|down}"
