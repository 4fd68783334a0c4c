#!/bin/sh
# The Veilleuse image's system layer: what turns a Debian (or Raspberry Pi OS) arm64
# root with the veilleuse package installed into the appliance. Run as root inside
# the target root, once, at build time:
#   - by the pi-gen stage (image/pi-gen/stage-veilleuse/00-veilleuse/01-run-chroot.sh),
#   - by the Debian-only twin (image/build-twin.sh), which is how it is tested here.
# It is idempotent. The package already brings the units, the users, the sshd and
# Mosquitto drop-ins; this script adds only what belongs to a box on a shelf.
set -eu

say() { printf 'veilleuse image: %s\n' "$*"; }

[ "$(id -u)" -eq 0 ] || { echo "system.sh: run as root inside the image root" >&2; exit 1; }
dpkg-query -W -f='${Status}' veilleuse 2>/dev/null | grep -q 'install ok installed' || {
    echo "system.sh: install the veilleuse package first" >&2
    exit 1
}

# -- Hostname ---------------------------------------------------------------------
say "hostname veilleuse"
echo veilleuse > /etc/hostname
if grep -q '^127\.0\.1\.1' /etc/hosts 2>/dev/null; then
    sed -i 's/^127\.0\.1\.1.*/127.0.1.1\tveilleuse/' /etc/hosts
else
    printf '127.0.1.1\tveilleuse\n' >> /etc/hosts
fi

# -- I2C for the OLED, lgpio for the button and LED ------------------------------
# config.txt lives on the FAT boot partition: only on a Pi (the twin has none).
for config in /boot/firmware/config.txt /boot/config.txt; do
    if [ -f "$config" ]; then
        say "I2C on in $config"
        sed -i -e 's/^#\?dtparam=i2c_arm=.*/dtparam=i2c_arm=on/' "$config"
        grep -q '^dtparam=i2c_arm=on' "$config" || echo 'dtparam=i2c_arm=on' >> "$config"
        break
    fi
done
echo i2c-dev > /etc/modules-load.d/veilleuse-i2c.conf
# gpiozero would probe several pin libraries; lgpio is the one that drives both the
# Pi 4 (gpiochip0) and the Pi 5 (the RP1's chip), and the package's venv carries it.
mkdir -p /etc/systemd/system/veilleuse-screen.service.d
cat > /etc/systemd/system/veilleuse-screen.service.d/pins.conf <<'EOF'
# Written by the Veilleuse image (image/system.sh).
[Service]
Environment=GPIOZERO_PIN_FACTORY=lgpio
EOF

# -- No password anywhere: SSH with keys only ------------------------------------
say "no passwords: root locked, SSH keys only"
passwd --lock root >/dev/null
# Any account a base image made with a password (pi-gen's FIRST_USER_PASS) or with an
# empty one (a login with none) is locked;
# Raspberry Pi Imager's customisation or the boot partition's authorized_keys give
# the admin a key instead.
awk -F: '$2 !~ /^[!*]/ { print $1 }' /etc/shadow | while read -r account; do
    passwd --lock "$account" >/dev/null
done
# With no password to type, the admin (the first user, in group sudo, as Raspberry Pi
# OS makes it) uses sudo without one: holding the SSH key is what admits them.
if getent group sudo >/dev/null; then
    uid1000=$(getent passwd 1000 | cut -d: -f1)
    if [ -n "$uid1000" ]; then
        usermod -a -G sudo,adm "$uid1000"
    fi
    echo '%sudo ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/010_veilleuse-admin
    chmod 0440 /etc/sudoers.d/010_veilleuse-admin
fi
# The package's drop-in says keys only; sshd_config.d is read first-match, so its
# name sorts before any other drop-in (Imager's, cloud-init's).
if [ -f /etc/ssh/sshd_config.d/veilleuse.conf ]; then
    mv /etc/ssh/sshd_config.d/veilleuse.conf /etc/ssh/sshd_config.d/00-veilleuse.conf
fi
sed -i 's/^#\?PasswordAuthentication.*/PasswordAuthentication no/' /etc/ssh/sshd_config
# pi-gen and Debian make host keys at build time: every card would share them.
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/host-keys.conf <<'EOF'
# Written by the Veilleuse image: each box makes its own host keys at first boot
# (ssh-keygen -A makes only the missing ones), before sshd checks its configuration.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
systemctl enable ssh.service >/dev/null 2>&1 || true

# -- The SD card: journal in RAM, clock saved across reboots ---------------------
say "journald volatile; timesyncd keeps the clock file"
mkdir -p /etc/systemd/journald.conf.d
cat > /etc/systemd/journald.conf.d/veilleuse.conf <<'EOF'
# Written by the Veilleuse image: the journal stays in RAM (the SD card wears out,
# and a card taken from the box holds no logs).
[Journal]
Storage=volatile
RuntimeMaxUse=32M
EOF
rm -rf /var/log/journal
# The Pi has no battery-backed clock. timesyncd sets the clock at boot from the time
# it last saved (/var/lib/systemd/timesync/clock) before it reaches a server, so a box
# never starts in 1970; Veilleuse's health says "clock not synchronised" until then.
if [ -e /lib/systemd/system/systemd-timesyncd.service ]; then
    systemctl enable systemd-timesyncd.service >/dev/null 2>&1
fi

# -- Security updates by themselves ----------------------------------------------
say "unattended security upgrades (Debian security, backports, Raspberry Pi, Veilleuse)"
cat > /etc/apt/apt.conf.d/20auto-upgrades <<'EOF'
// Written by the Veilleuse image.
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
APT::Periodic::AutocleanInterval "7";
EOF
cat > /etc/apt/apt.conf.d/52veilleuse-unattended-upgrades <<'EOF'
// Written by the Veilleuse image: security fixes, and Veilleuse's own releases
// (its apt repository's Release file says Origin: Veilleuse).
Unattended-Upgrade::Origins-Pattern {
        "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";
        "origin=Debian,codename=${distro_codename},label=Debian";
        "origin=Debian Backports,codename=${distro_codename}-backports,label=Debian Backports";
        "origin=Raspberry Pi Foundation,codename=${distro_codename},label=Raspberry Pi Foundation";
        "origin=Veilleuse";
};
Unattended-Upgrade::Automatic-Reboot "true";
Unattended-Upgrade::Automatic-Reboot-Time "04:30";
Unattended-Upgrade::Remove-Unused-Dependencies "true";
EOF

# -- First boot from the boot partition ------------------------------------------
if [ -e /lib/systemd/system/veilleuse-firstboot.service ]; then
    systemctl enable veilleuse-firstboot.service >/dev/null
fi

# -- Nothing to build or debug with ----------------------------------------------
say "no compilers or debuggers"
tools="gcc gcc-12 cpp cpp-12 g++ g++-12 make build-essential gdb gdbserver strace ltrace
       libc6-dev linux-libc-dev python3-dev python3.11-dev libpython3.11-dev"
installed=""
for package in $tools; do
    if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        installed="$installed $package"
    fi
done
if [ -n "$installed" ]; then
    # shellcheck disable=SC2086 # a list of package names
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $installed
    DEBIAN_FRONTEND=noninteractive apt-get autoremove --purge -y -q
fi
apt-get clean
rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/*
say "done"
