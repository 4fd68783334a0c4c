#!/usr/bin/env bash
# Build the Raspberry Pi image: dist/veilleuse-<version>-arm64.img.xz, its .sha256 and
# a Raspberry Pi Imager manifest (dist/veilleuse-<version>-arm64.json).
#   image/build-pi.sh [PACKAGE.deb]
# pi-gen (Raspberry Pi OS's own builder) is fetched at the commit pinned below, never
# vendored; it builds Raspberry Pi OS Lite (stages 0-2) and then image/pi-gen's stage,
# which installs the Veilleuse package and applies image/system.sh, the same script the
# Debian-only twin (image/build-twin.sh) applies and the tests boot.
# Needs: the Raspberry Pi archive (archive.raspberrypi.com) and deb.debian.org, docker
# (pi-gen's build-docker.sh; PI_GEN_MODE=native runs its build.sh on a Debian host
# instead, as root) and about 10 GB of disk. Without a package it builds one first
# (scripts/build-deb.sh arm64).
set -euo pipefail

# pi-gen's bookworm-arm64 branch, 2026-06-15 ("Merge branch 'bookworm' into
# bookworm-arm64"). Why bookworm: the package is built and tested on bookworm here
# (Python 3.11, Suricata 7 from bookworm-backports), and Debian's LTS covers bookworm
# arm64 until June 2028. Trixie (Suricata 7 in main, Python 3.13) needs the lock made
# for 3.13 and its own tested twin first.
PI_GEN_REPOSITORY=${PI_GEN_REPOSITORY:-https://github.com/RPi-Distro/pi-gen.git}
PI_GEN_COMMIT=d7a31c6aa09f4b867902c51da2b45807c0a1709e

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
version=$(dpkg-parsechangelog -S Version)
name="veilleuse-$version-arm64"
deb=${1:-dist/veilleuse_${version}_arm64.deb}
if [ ! -f "$deb" ]; then
    ./scripts/build-deb.sh arm64
fi
work=${VEILLEUSE_PI_GEN_DIR:-build/pi-gen}

if [ ! -d "$work/.git" ] || [ "$(git -C "$work" rev-parse HEAD)" != "$PI_GEN_COMMIT" ]; then
    rm -rf "$work"
    mkdir -p "$work"
    git -C "$work" init -q
    git -C "$work" fetch -q --depth 1 "$PI_GEN_REPOSITORY" "$PI_GEN_COMMIT"
    git -C "$work" checkout -q FETCH_HEAD
fi
git -C "$work" clean -qfdx -e work -e deploy
git -C "$work" checkout -q -- .

# Raspberry Pi OS Lite is built but not exported; ours is.
touch "$work/stage2/SKIP_IMAGES"
rm -rf "$work/stage-veilleuse"
cp -r image/pi-gen/stage-veilleuse "$work/stage-veilleuse"
files="$work/stage-veilleuse/00-veilleuse/files"
mkdir -p "$files"
cp "$deb" image/packages.list image/system.sh "$files/"
{
    cat image/pi-gen/config
    echo "ARCHIVE_FILENAME=\"$name\""
    echo "IMG_FILENAME=\"$name\""
    echo "STAGE_LIST=\"stage0 stage1 stage2 stage-veilleuse\""
} > "$work/config"

if [ "${PI_GEN_MODE:-docker}" = native ]; then
    (cd "$work" && ./build.sh)
else
    (cd "$work" && ./build-docker.sh)
fi

mkdir -p dist
cp "$work/deploy/$name.img.xz" "dist/$name.img.xz"
(cd dist && sha256sum "$name.img.xz" > "$name.img.xz.sha256")
python3 image/imager_manifest.py "dist/$name.img.xz" --version "$version" \
    > "dist/$name.json"
echo "built dist/$name.img.xz (sha256 in dist/$name.img.xz.sha256, Imager manifest dist/$name.json)"
