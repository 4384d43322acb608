#!/usr/bin/env bash
# Installs the Debian packages that ironblade's tests, demo and benchmarks
# use, skipping those already installed. Run as root on Debian 12:
#
#   bash scripts/deps.sh [EXTRA-PACKAGE...]
#
# vblade is the reference target the tests and benchmarks compare with;
# libnbd-bin (nbdinfo, nbdcopy, nbdfuse) and qemu-utils (qemu-img, qemu-io)
# are the real NBD clients; nftables loses frames on purpose; ethtool turns
# VLAN offload off for the raw link's VLAN test; strace proves
# the order of writes and syncs; fuse3, mount (losetup) and e2fsprogs carry a
# filesystem over NBD without the kernel nbd module; resource-agents
# (ocf-tester, ocf-shellfuncs) and libxml2-utils (ocf-tester's xmllint) test
# the OCF agents in scripts/ocf; make runs it all and ca-certificates lets Go
# fetch modules.
set -euo pipefail

packages=(vblade iproute2 libnbd-bin qemu-utils nftables strace fuse3 mount e2fsprogs ethtool
	kmod procps util-linux resource-agents libxml2-utils make ca-certificates "$@")
missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ "${#missing[@]}" -eq 0 ]; then
	echo "deps: already installed: ${packages[*]}"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing ${missing[*]}; run as root to install them" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
