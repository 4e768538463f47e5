#!/usr/bin/env bash
# Build the Debian 12 guest image for `make e2e` (root, mmdebstrap from Debian's mirror).
# Usage: e2e/build-image.sh OUTDIR
# OUTDIR receives rootfs.qcow2 (ext4 on /dev/vda, no partition table), vmlinuz, initrd.img and
# recipe.sha256. The guest boots with -kernel/-initrd; cloud-init (NoCloud) does the rest.
# Everything the guest needs at run time is in the image or served from the host's loopback.
set -euo pipefail
out=${1:?usage: build-image.sh OUTDIR}
mirror=${DECON_E2E_MIRROR:-http://deb.debian.org/debian}
security=${DECON_E2E_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
size=${DECON_E2E_ROOTFS_SIZE:-6G}

packages=(
  systemd-sysv udev dbus kmod procps iproute2 ifupdown isc-dhcp-client netbase
  linux-image-cloud-amd64 initramfs-tools
  cloud-init openssh-server sudo
  python3 python3-venv python3-pip
  curl ca-certificates less
)

tmp=$(mktemp -d /var/tmp/decon-e2e-build.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root

mmdebstrap --variant=minbase --mode=root --format=directory \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --components=main \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer' \
  bookworm "$root" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
  "deb $security bookworm-security main" </dev/null

echo "decon-e2e" >"$root/etc/hostname"
printf '/dev/vda / ext4 defaults,errors=remount-ro 0 1\n' >"$root/etc/fstab"
# The guest has no DNS upstream and no internet; keep it from waiting on either.
cat >"$root/etc/cloud/cloud.cfg.d/90-decon-e2e.cfg" <<'CFG'
# decon e2e image: NoCloud seed only (never probe EC2 IMDS for user-data), root login by key,
# keep the host keys baked into the image (key generation is slow under TCG), and leave sshd
# alone (setting ssh_pwauth makes cloud-init restart sshd mid-boot, resetting early ssh sessions).
datasource_list: [NoCloud, None]
disable_root: false
ssh_deletekeys: false
ssh_genkeytypes: []
locale: false
growpart: {mode: "off"}
resize_rootfs: false
CFG
# Serial console: no getty login prompt noise needed, but keep it for manual debugging.
mkdir -p "$root/etc/systemd/system.conf.d"
printf '[Manager]\nDefaultTimeoutStopSec=20s\n' >"$root/etc/systemd/system.conf.d/90-decon-e2e.conf"
sed -i 's/^#\?PermitRootLogin.*/PermitRootLogin prohibit-password/' "$root/etc/ssh/sshd_config"
printf 'UseDNS no\n' >"$root/etc/ssh/sshd_config.d/90-decon-e2e.conf"

kver=$(ls "$root/lib/modules" | sort -V | tail -1)
cp "$root/boot/vmlinuz-$kver" "$tmp/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$tmp/initrd.img"
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*_Packages

mkfs.ext4 -q -F -L decon-root -d "$root" "$tmp/rootfs.raw" "$size"
qemu-img convert -O qcow2 "$tmp/rootfs.raw" "$tmp/rootfs.qcow2"

mkdir -p "$out"
mv "$tmp/vmlinuz" "$tmp/initrd.img" "$tmp/rootfs.qcow2" "$out/"
echo "kernel $kver" >"$out/build-info.txt"
