#!/bin/sh
# mmdebstrap --customize-hook for the lvs-cluster lab base image.
# Runs on the build host as root, after all packages are installed;
# $1 is the root directory of the new image.  Part of the recipe hash.
set -eu
root="$1"
recipe="$(cd "$(dirname "$0")" && pwd)"

# Image-side files (cloud-init settings, fstab, interfaces, hostname),
# owned by root whatever owns the checkout.
tar -C "$recipe/overlay" --owner=0 --group=0 --numeric-owner -cf - . \
    | tar -C "$root" --no-same-permissions --no-overwrite-dir -xf -
# the overlay is in git; make permissions deterministic
find "$root/etc/cloud/cloud.cfg.d" "$root/etc/fstab" "$root/etc/hostname" \
    "$root/etc/hosts" "$root/etc/network/interfaces" -type f -exec chmod 0644 {} +

# An EMPTY apt source list: guests are offline, and cloud-init's packages
# module must be able to `apt-get update` without reaching anything.
: > "$root/etc/apt/sources.list"
find "$root/etc/apt/sources.list.d" -mindepth 1 -delete

# mmdebstrap copied the build host's resolver; guests have no DNS (an
# unreachable nameserver would only add timeouts), so name nothing.
printf '# lvs-cluster lab guest: no DNS\n' > "$root/etc/resolv.conf"

# Generate the one locale and make it the default, so that cloud-init's
# locale module finds it already set and regenerates nothing at boot.
echo 'en_US.UTF-8 UTF-8' > "$root/etc/locale.gen"
chroot "$root" locale-gen
chroot "$root" update-locale LANG=en_US.UTF-8

# Per-guest identity is created at first boot: systemd writes a machine-id,
# cloud-init's ssh module writes new host keys.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*

# Nothing periodic or network-bound in an offline lab guest (ignore units
# this package set does not ship).
for unit in apt-daily.timer apt-daily-upgrade.timer man-db.timer \
        e2scrub_all.timer e2scrub_reap.service fstrim.timer \
        systemd-networkd-wait-online.service; do
    chroot "$root" systemctl disable "$unit" >/dev/null 2>&1 || true
done

# No root password (locked), no default user password: access is only by
# the ssh keys a guest's user-data installs.
chroot "$root" passwd -l root >/dev/null

# Keep the image small.
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
