#!/usr/bin/env bash
# Installs the Debian packages Chokepoint needs, only those missing (apt-get update first, as Debian asks).
set -euo pipefail
# build-essential and python3-dev: the C compiler and headers that build the compiled core (setup.py, Cython);
# postgresql: the manager's store is tested against a real server; chromium: its dashboard and the traffic bench;
packages=(python3-venv build-essential python3-dev openvpn iputils-ping iproute2 iptables nftables libnetfilter-queue-dev
  iperf3 dnsutils tshark tcpdump curl openssl ethtool postgresql chromium)
# The circumvention matrix's real transports (chokepoint.transports), the lab's private Tor network and the
# traffic bench (lab/trafficgen.py: trojan, v2ray, chromium for the TLS-in-TLS detector's rates).
packages+=(shadowsocks-libev obfs4proxy trojan v2ray wireguard-go wireguard-tools stunnel4 tor openssh-server openssh-client
  strongswan-charon strongswan-swanctl libcharon-extra-plugins tinyproxy microsocks snowflake-client)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A python without a working venv module needs python3-venv; pyenv builds have one already.
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Several of these packages ship system services (tor, sshd, stunnel, strongswan, tinyproxy, shadowsocks-libev):
  # the lab runs its own copies in namespaces, and a stock tor must never start and reach out. Without a
  # policy-rc.d already in place, one that forbids starting services is installed for the install only.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
