#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine: installs what is missing (PostgreSQL 15, etcd,
# openssl (signs the cluster certificates),
# util-linux's setpriv, HAProxy (the proxy ports' data plane), PgBouncer (pgpilot pooler), Prometheus with promtool (pgpilot
# monitoring --serve, and the tests of the shipped alert rules), Patroni (only for the side-by-side
# benchmark, npm run bench; pgpilot never uses it)) with apt, then the Node
# dependencies (npm ci) and the build. Prints what it did. Safe to run again: it skips what is
# already there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }

need_packages=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for pkg in postgresql-15 postgresql-contrib etcd-server etcd-client util-linux iproute2 nftables haproxy pgbouncer prometheus patroni openssl; do
  if have_pkg "$pkg"; then say "$pkg already installed"; else need_packages+=("$pkg"); fi
done

if [ "${#need_packages[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
      echo "setup: error: need root to install: ${need_packages[*]}" >&2
      echo "setup: hint: run as root, or install them with apt-get first" >&2
      exit 2
    fi
  else SUDO=""; fi
  say "installing: ${need_packages[*]}"
  $SUDO apt-get update -q
  # Debian's postgresql-common would create and start a default cluster on port 5432; pgpilot
  # manages its own clusters, so skip that (the binaries are all we need).
  if [ ! -e /etc/postgresql-common/createcluster.conf ] || ! grep -q '^create_main_cluster = false' /etc/postgresql-common/createcluster.conf; then
    $SUDO mkdir -p /etc/postgresql-common
    echo 'create_main_cluster = false' | $SUDO tee -a /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  # Keep the distribution's services (etcd on 2379, haproxy, patroni, ...) from being started by
  # the packages' install scripts: pgpilot starts its own processes on loopback ports it picks.
  # policy-rc.d is the Debian mechanism for that; ours exists only for the duration of the install.
  policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from pgpilot scripts/setup.sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
    trap '[ "$policy_added" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${need_packages[@]}"
  if [ "$policy_added" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; policy_added=0; fi
  say "installed: ${need_packages[*]}"
  # pgpilot runs its own haproxy processes from generated configs (pgpilot haproxy-config); the
  # distribution's service (default config, no listeners) is not used, so do not leave it running.
  # The same holds for etcd-server, whose service would otherwise listen on 2379, for patroni
  # (the benchmark starts its own Patroni processes), and for prometheus (9090) and the
  # node exporter it recommends (9100): `pgpilot monitoring NAME --serve` runs its own Prometheus
  # on a free loopback port. And for pgbouncer (6432): `pgpilot pooler enable` runs one per node.
  for service in haproxy etcd patroni prometheus prometheus-node-exporter pgbouncer; do
    pkg=$service; [ "$service" = etcd ] && pkg=etcd-server; [ "$service" = prometheus-node-exporter ] && pkg=prometheus
    if [[ " ${need_packages[*]} " == *" $pkg "* ]] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now "$service.service" >/dev/null 2>&1 || true
      say "disabled the distribution's $service service (pgpilot starts its own)"
    fi
  done
fi

if ! id postgres >/dev/null 2>&1; then
  echo "setup: error: the postgres OS user is missing (it comes with postgresql-15)" >&2
  exit 2
fi

if [ -f node_modules/.package-lock.json ] && cmp -s package-lock.json node_modules/.pgpilot-lock 2>/dev/null; then
  say "node modules up to date"
else
  say "installing node modules (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.pgpilot-lock
fi

say "building (tsc)"
npm run --silent build
say "ready: bin/pgpilot $(node -p "require('./package.json').version")"
