#!/usr/bin/env bash
# Install the system packages the collection's tests and demo need (Debian/Ubuntu, as root).
# Idempotent and quick when everything is present: apt runs only for missing packages.
set -euo pipefail

PACKAGES=(
  # build libvirt-python from PyPI
  libvirt-dev pkg-config gcc python3-dev python3-venv
  # the hypervisor host
  libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base
  # the rbd storage backend: rbd pools with ceph auth are defined (never started) in the tests
  libvirt-daemon-driver-storage-rbd
  # the test guest image (direct kernel boot + busybox initramfs + qemu-ga)
  qemu-guest-agent busybox-static cpio kmod zstd xz-utils
  # the real cloud image with cloud-init (scripts/build-cloud-image.sh)
  mmdebstrap
  # storage tests and schema validation
  parted e2fsprogs libxml2-utils util-linux iproute2
  # reading the cloud-init seed ISO back in tests (isoinfo); the modules never need it
  genisoimage
  # the test fleet of hypervisors reached over SSH (tests/hosts/fleet.sh): an sshd per host,
  # the controller's ssh and ssh-keygen
  openssh-server openssh-client
  # the real-world definition corpus (virt-install --print-xml), UEFI firmware and the TPM emulator
  virtinst ovmf swtpm swtpm-tools
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all system packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}); run as root or install them" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
