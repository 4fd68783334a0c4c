#!/usr/bin/env bash
# Build the Debian-only twin of the Pi image's root file system:
# dist/veilleuse-twin-<version>-arm64.tar, Debian bookworm arm64 (mmdebstrap, under
# qemu-user on a PC) with image/packages.list, the Veilleuse package, and the same
# image/system.sh the pi-gen stage applies. It is what the tests boot with
# systemd-nspawn: the image's system layer, checked without a Pi and without the
# Raspberry Pi archive (the firmware, kernel and Raspberry Pi OS tweaks are what the
# twin lacks). An empty /boot/firmware stands for the FAT boot partition.
#   image/build-twin.sh [PACKAGE.deb]
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
version=$(dpkg-parsechangelog -S Version)
deb=${1:-dist/veilleuse_${version}_arm64.deb}
if [ ! -f "$deb" ]; then
    ./scripts/build-deb.sh arm64
fi
output=dist/veilleuse-twin-$version-arm64.tar

mapfile -t packages < <(grep -v -e '^#' -e '^$' image/packages.list)
base=$(./scripts/rootfs.sh arm64 bookworm minbase "${packages[@]}")
root=$(mktemp -d "${TMPDIR:-/tmp}/veilleuse-twin.XXXXXX")
trap 'rm -rf "$root"' EXIT
tar -x -C "$root" -f "$base"
cp "$deb" "$root/var/tmp/veilleuse.deb"
cp image/system.sh "$root/var/tmp/veilleuse-system.sh"
# pi-gen's stage 1 makes the first user (no password); the twin makes the same one.
first_user=$(bash -c 'source image/pi-gen/config; echo "$FIRST_USER_NAME"')
# The package's dependencies are all in the base: nothing is downloaded here.
# shellcheck disable=SC2016 # expanded inside the root, from --setenv
systemd-nspawn --quiet --register=no --keep-unit --as-pid2 --private-network \
    --directory="$root" --setenv=DEBIAN_FRONTEND=noninteractive \
    --setenv=FIRST_USER="$first_user" \
    sh -c 'useradd --create-home --uid 1000 --user-group --shell /bin/bash "$FIRST_USER" \
           && apt-get install -y --no-install-recommends /var/tmp/veilleuse.deb \
           && sh /var/tmp/veilleuse-system.sh'
rm -f "$root/var/tmp/veilleuse.deb" "$root/var/tmp/veilleuse-system.sh"
mkdir -p "$root/boot/firmware"
mkdir -p dist
tar -C "$root" -c -f "$output.partial" .
mv "$output.partial" "$output"
echo "$output"
