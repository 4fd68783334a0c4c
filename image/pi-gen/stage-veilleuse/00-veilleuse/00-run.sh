#!/bin/bash -e
# pi-gen runs this on the build host with ROOTFS_DIR the image's root; on_chroot runs
# commands inside it. image/build-pi.sh has put the package, the package list and the
# system script in files/.
echo "deb http://deb.debian.org/debian bookworm-backports main" \
	> "${ROOTFS_DIR}/etc/apt/sources.list.d/bookworm-backports.list"
install -m 644 files/veilleuse_*_arm64.deb "${ROOTFS_DIR}/tmp/veilleuse.deb"
install -m 644 files/packages.list "${ROOTFS_DIR}/tmp/packages.list"
install -m 755 files/system.sh "${ROOTFS_DIR}/tmp/veilleuse-system.sh"

on_chroot << 'CHROOT'
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update
packages=$(grep -v '^#' /tmp/packages.list | sed 's|/.*||' | tr '\n' ' ')
backports=$(grep '/bookworm-backports$' /tmp/packages.list | sed 's|/.*||' | tr '\n' ' ')
# shellcheck disable=SC2086 # lists of package names
apt-get install -y --no-install-recommends -t bookworm-backports $backports
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $packages
apt-get install -y --no-install-recommends /tmp/veilleuse.deb
sh /tmp/veilleuse-system.sh
rm -f /tmp/veilleuse.deb /tmp/packages.list /tmp/veilleuse-system.sh
CHROOT
