#!/bin/busybox sh
# /init of the kernel-test guest (see docs/kernel-tests.md). run.sh puts it
# in the initramfs with busybox, the kernel modules the checks need and a
# few host binaries. It sets up the machine -- pseudo filesystems, the
# virtio drivers, eth0, the 9p share from the host at /share -- runs
# guest-checks.sh, and powers off whatever happens: the host harness waits
# for qemu to exit.

/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/usr/sbin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /run /mnt /share
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug

# insmod every module that NAME needs, in dependency order (run.sh lists
# them in /lib/modules/NAME.deps, NAME itself last), then NAME with the
# given parameters. Modules already loaded are skipped.
kmod_load() {
	name=$1
	shift
	for ko in $(cat "/lib/modules/$name.deps"); do
		mod=$(basename "$ko" .ko | tr - _)
		[ -d "/sys/module/$mod" ] && continue
		if [ "$(basename "$ko" .ko)" = "$name" ]; then
			insmod "/lib/modules/$ko" "$@" || return 1
		else
			# crc32c-intel needs SSE4.2; crc32c_generic stands in.
			insmod "/lib/modules/$ko" 2>/dev/null || true
		fi
	done
	[ -d "/sys/module/$(echo "$name" | tr - _)" ]
}

fail_boot() {
	echo "guest-init: $*" >&2
	echo "guest-init: FAILED: $*" > /dev/kmsg
	poweroff -f
}

for m in virtio_pci virtio_net 9pnet_virtio 9p ext4; do
	kmod_load "$m" || fail_boot "cannot load $m"
done
ip link set lo up

# The share may take a moment to appear after the virtio-9p driver binds.
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none share /share 2>/dev/null; do
	i=$((i + 1))
	[ "$i" -ge 50 ] && fail_boot "cannot mount the 9p share"
	sleep 0.1
done

# The checks' own output goes to the console (the host keeps it) and to
# the share; a subshell, so that an exit in them still reaches poweroff.
. /etc/kernel-tests/guest-checks.sh
(main_checks) 2>&1 | tee /share/results/guest.log
echo "guest-init: checks finished, powering off"
sync
umount /share 2>/dev/null
poweroff -f
