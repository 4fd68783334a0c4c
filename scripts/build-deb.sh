#!/usr/bin/env bash
# Build the Veilleuse Debian package in a clean Debian root of the target
# architecture (arm64 runs under qemu-user-static), from this source tree:
#   scripts/build-deb.sh [ARCH] [SUITE]      (default: this machine's, bookworm)
# Writes dist/veilleuse_<version>_<arch>.deb. Needs root, mmdebstrap and
# systemd-container; the build root is cached (see scripts/rootfs.sh), and pip's
# downloads and the compiled systemd-python wheel under $VEILLEUSE_CACHE/pip-ARCH.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
arch=${1:-$(dpkg --print-architecture)}
suite=${2:-bookworm}
cache=${VEILLEUSE_CACHE:-/var/cache/veilleuse}
out=${VEILLEUSE_DIST:-$here/dist}

build_packages=(build-essential debhelper dpkg-dev fakeroot python3 python3-venv
                python3-dev libsystemd-dev pkg-config ca-certificates)
tarball=$("$here/scripts/rootfs.sh" "$arch" "$suite" buildd "${build_packages[@]}")

work=$(mktemp -d /var/tmp/veilleuse-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root" "$cache/pip-$arch" "$out"
tar -C "$work/root" -xf "$tarball"
mkdir -p "$work/root/build/veilleuse"
# The tracked and new (not ignored) files of the tree, as they are now.
(cd "$here" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' file; do [ -e "$file" ] && printf '%s\0' "$file"; done \
    | tar --null -T - -cf -) | tar -C "$work/root/build/veilleuse" -xf -

# pip trusts the certificate authorities of this machine (a TLS-inspecting proxy's too).
systemd-nspawn --quiet --register=no --keep-unit --as-pid2 \
    --directory="$work/root" --bind="$cache/pip-$arch:/root/.cache/pip" \
    --bind-ro=/etc/ssl/certs/ca-certificates.crt:/etc/ssl/host-ca-certificates.crt \
    --setenv=PIP_CERT=/etc/ssl/host-ca-certificates.crt \
    --chdir=/build/veilleuse --setenv=DEB_BUILD_OPTIONS=nocheck \
    dpkg-buildpackage --build=binary --no-sign -rfakeroot

cp "$work/root/build/"veilleuse_*.deb "$out/"
ls "$out"/veilleuse_*_"$arch".deb
