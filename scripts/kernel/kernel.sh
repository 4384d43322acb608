# shellcheck shell=bash
# The guest kernel and initramfs pieces shared by the kernel tests
# (scripts/kernel/run.sh) and the demo's VM nodes (scripts/demo/vm.sh):
# Debian's kernel package fetched with apt and unpacked without installing
# it, modules resolved with their dependencies, host binaries copied with
# their libraries. Sourced, not run. The caller defines die MESSAGE, which
# must exit.

# kernel_fetch CACHE [PKG] downloads and unpacks the kernel package PKG
# (default: what linux-image-amd64 depends on) under CACHE, once, and sets
# KERNEL_PKG, KVER (its release), KROOT (the unpacked tree) and VMLINUZ.
# Older kernels in CACHE are removed.
kernel_fetch() {
	local cache=$1 deb
	KERNEL_PKG=${2:-}
	mkdir -p "$cache"
	if [ -z "$KERNEL_PKG" ]; then
		KERNEL_PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
		if [ -z "$KERNEL_PKG" ]; then
			apt-get update -q
			KERNEL_PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ { print $2; exit }')
		fi
		[ -n "$KERNEL_PKG" ] || die "apt offers no linux-image-amd64: set KERNEL_PKG"
	fi
	KVER=${KERNEL_PKG#linux-image-}
	KROOT=$cache/$KERNEL_PKG
	if [ ! -e "$KROOT/.unpacked" ]; then
		deb=$(ls "$cache/${KERNEL_PKG}"_*.deb 2>/dev/null | tail -n 1 || true)
		if [ -z "$deb" ]; then
			echo "kernel: downloading $KERNEL_PKG"
			(cd "$cache" && apt-get download -q -o APT::Sandbox::User=root "$KERNEL_PKG") ||
				(apt-get update -q && cd "$cache" && apt-get download -q -o APT::Sandbox::User=root "$KERNEL_PKG") ||
				die "cannot download $KERNEL_PKG"
			deb=$(ls "$cache/${KERNEL_PKG}"_*.deb | tail -n 1)
		fi
		echo "kernel: unpacking $(basename "$deb")"
		rm -rf "$KROOT"
		mkdir -p "$KROOT"
		dpkg-deb -x "$deb" "$KROOT" || die "cannot unpack $deb"
		depmod -b "$KROOT" "$KVER" || die "depmod failed for $KVER in $KROOT"
		# Only a complete tree is marked usable.
		touch "$KROOT/.unpacked"
		# Older kernels' packages and trees are of no further use.
		find "$cache" -mindepth 1 -maxdepth 1 -name 'linux-image-*' \
			! -name "$KERNEL_PKG" ! -name "$(basename "$deb")" -exec rm -rf {} +
	fi
	VMLINUZ=$KROOT/boot/vmlinuz-$KVER
	[ -f "$VMLINUZ" ] || die "no kernel at $VMLINUZ"
}

# initramfs_modules DIR MODULE... copies each MODULE of the fetched kernel
# and the modules it depends on into DIR/lib/modules, and lists them, in
# load order with MODULE last, in DIR/lib/modules/MODULE.deps (the guest
# has no modprobe: it insmods what the list says).
initramfs_modules() {
	local dir=$1 m ko
	shift
	mkdir -p "$dir/lib/modules"
	for m in "$@"; do
		: >"$dir/lib/modules/$m.deps"
		for ko in $(modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" { print $2 }'); do
			cp -n "$ko" "$dir/lib/modules/"
			basename "$ko" >>"$dir/lib/modules/$m.deps"
		done
		[ -s "$dir/lib/modules/$m.deps" ] || die "module $m is not in $KERNEL_PKG ($KROOT)"
	done
}

# initramfs_binary DIR SRC DST copies the host binary SRC to DIR/DST with
# the libraries it links (at the paths ldd names).
initramfs_binary() {
	local dir=$1 lib
	install -D -m 755 "$2" "$dir$3"
	ldd "$2" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | while read -r lib; do
		[ -e "$dir$lib" ] || install -D -m 755 "$(readlink -f "$lib")" "$dir$lib"
	done
}
