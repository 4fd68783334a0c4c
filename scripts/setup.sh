#!/usr/bin/env bash
# Install everything Veilleuse needs on Debian bookworm (a Pi or a laptop/CI):
# Suricata 7 from bookworm-backports, tshark, Mosquitto, build deps for
# systemd-python, then a virtualenv in .venv with the project and its test deps.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

export DEBIAN_FRONTEND=noninteractive
backports=/etc/apt/sources.list.d/veilleuse-bookworm-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    as_root tee "$backports" >/dev/null <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
fi

echo "wireshark-common wireshark-common/install-setuid boolean false" | as_root debconf-set-selections
as_root apt-get update -q
as_root apt-get install -y -q --no-install-recommends -t bookworm-backports suricata
as_root apt-get install -y -q --no-install-recommends \
    tshark mosquitto tcpdump tcpreplay iproute2 systemd procps \
    python3 python3-venv python3-dev gcc pkg-config libsystemd-dev \
    fonts-dejavu-core libjpeg-dev zlib1g-dev libfreetype-dev nftables age
# The device report's tests and pictures open it in a real browser (headless Chromium).
as_root apt-get install -y -q --no-install-recommends chromium
# Building the Debian package and testing it on a booted system (amd64, and arm64
# under qemu-user): root file systems from mmdebstrap, booted with systemd-nspawn.
as_root apt-get install -y -q --no-install-recommends \
    mmdebstrap arch-test systemd-container qemu-user-static binfmt-support \
    dpkg-dev git shellcheck
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    as_root update-binfmts --enable qemu-aarch64 || true
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
echo "Veilleuse is set up: .venv/bin/veilleuse --help"
