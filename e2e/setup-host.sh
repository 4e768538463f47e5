#!/usr/bin/env bash
# Host tools for `make e2e`: qemu (TCG), socat (guestfwd), genisoimage (NoCloud seed),
# mmdebstrap (guest image), ssh client, cloud-init (schema check of the user-data on the host). Installs the missing ones from Debian's apt as root.
set -euo pipefail
declare -A pkg_of=(
  [qemu-system-x86_64]=qemu-system-x86 [qemu-img]=qemu-utils [socat]=socat
  [genisoimage]=genisoimage [mmdebstrap]=mmdebstrap [ssh]=openssh-client
  [ssh-keygen]=openssh-client [mkfs.ext4]=e2fsprogs [cloud-init]=cloud-init
)
missing=()
for cmd in "${!pkg_of[@]}"; do
  command -v "$cmd" >/dev/null || missing+=("${pkg_of[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "e2e: missing host packages (install as root): ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
