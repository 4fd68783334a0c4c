#!/usr/bin/env bash
# Print the path of a cached Debian root file system tarball, building it with
# mmdebstrap the first time. The cache key is everything that shapes it: suite,
# architecture, variant and package list, so a changed list builds a new one.
#   scripts/rootfs.sh ARCH SUITE VARIANT PACKAGE...
# ARCH arm64 on an x86 machine runs under qemu-user-static (binfmt_misc).
# Bookworm gets its backports suite too (Suricata 7 lives there); a package
# written NAME/bookworm-backports is taken from it.
set -euo pipefail

arch=$1 suite=$2 variant=$3
shift 3
cache=${VEILLEUSE_CACHE:-/var/cache/veilleuse}
mirror=${VEILLEUSE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache"

packages=$(printf '%s\n' "$@" | sort -u | paste -sd, -)
key=$(printf '%s|%s|%s|%s|%s|v1' "$arch" "$suite" "$variant" "$packages" "$mirror" \
      | sha256sum | cut -c1-16)
tarball="$cache/rootfs-$suite-$arch-$key.tar"
if [ -s "$tarball" ]; then
    echo "$tarball"
    exit 0
fi

sources=("deb $mirror $suite main" "deb $mirror $suite-updates main"
         "deb ${mirror%/debian}/debian-security $suite-security main")
if [ "$suite" = bookworm ]; then
    sources+=("deb $mirror bookworm-backports main")
fi
if [ "$arch" != "$(dpkg --print-architecture)" ] \
        && [ ! -e "/proc/sys/fs/binfmt_misc/qemu-${arch/arm64/aarch64}" ]; then
    update-binfmts --enable "qemu-${arch/arm64/aarch64}" >&2 || {
        echo "rootfs.sh: no qemu-user emulation for $arch; apt-get install qemu-user-static binfmt-support" >&2
        exit 1
    }
fi
mmdebstrap --quiet --format=tar --arch="$arch" --variant="$variant" --include="$packages" \
    --aptopt='Acquire::Retries "3"' \
    "$suite" "$tarball.partial" "${sources[@]}" >&2
mv "$tarball.partial" "$tarball"
echo "$tarball"
