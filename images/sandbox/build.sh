#!/usr/bin/env bash
# Builds the openclaw-sandbox image WITHOUT a container registry: a Debian bookworm minbase root filesystem made
# by debootstrap from the host's configured apt mirror, imported with `docker import`.
#
#   build.sh rootfs OUT.tar                 debootstrap the root filesystem into a tarball (the slow step, ~1 min)
#   build.sh import ROOTFS.tar IMAGE DIGEST docker-import the tarball as IMAGE, labelled with DIGEST
#
# runner/images.ts drives both steps, caches the tarball under /var/cache/clawbox/ and skips the import when the
# existing image already carries the same dev.clawbox.image-digest label. Users who do have a registry can use
# images/sandbox/Dockerfile instead.
#
# Environment: CLAWBOX_MIRROR (default http://deb.debian.org/debian), CLAWBOX_SUITE (default bookworm).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mirror="${CLAWBOX_MIRROR:-http://deb.debian.org/debian}"
suite="${CLAWBOX_SUITE:-bookworm}"

die() { echo "build.sh: $*" >&2; exit 1; }

packages() {
  # packages.txt: one name a line, '#' comments; debootstrap wants them comma-separated.
  sed -e 's/#.*//' -e 's/[[:space:]]//g' "$here/packages.txt" | grep -v '^$' | paste -sd, -
}

build_rootfs() {
  local out="$1"
  [[ $EUID -eq 0 ]] || die "debootstrap needs root"
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  # Global, not local: the EXIT trap runs after this function has returned.
  work="$(mktemp -d /var/tmp/clawbox-rootfs.XXXXXX)"
  # The chroot may hold mounts (debootstrap mounts /proc) if it dies half-way; unmount before deleting.
  trap 'umount -R "$work/root/proc" "$work/root/sys" 2>/dev/null || true; rm -rf --one-file-system "$work"' EXIT

  echo "step: debootstrap $suite minbase from $mirror"
  debootstrap --variant=minbase --components=main --include="$(packages)" "$suite" "$work/root" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

  echo "step: trim root filesystem"
  local r="$work/root"
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/var/log/* \
    "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/tmp/* "$r"/var/tmp/*
  # Docker bind-mounts its own resolv.conf/hosts/hostname; never ship the build host's.
  : >"$r/etc/resolv.conf"
  : >"$r/etc/hostname"
  # no-new-privileges already neuters setuid binaries; removing the bits keeps the image safe without it too.
  find "$r" -xdev -type f -perm /6000 -exec chmod ug-s {} +
  chmod 1777 "$r/tmp"

  echo "step: pack root filesystem"
  tar --numeric-owner --xattrs --sort=name -C "$r" -cf "$out.partial" .
  mv "$out.partial" "$out"
}

import_rootfs() {
  local tarball="$1" image="$2" digest="$3"
  [[ -f "$tarball" ]] || die "no root filesystem tarball at $tarball"
  echo "step: docker import $image"
  # A non-root user and HOME=/tmp by default: with a read-only root, /tmp (a tmpfs) is the only writable place.
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV HOME=/tmp' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'WORKDIR /tmp' \
    --change 'USER 65534:65534' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL dev.clawbox.image-digest=$digest" \
    --change 'LABEL org.opencontainers.image.title=openclaw-sandbox' \
    "$tarball" "$image" >/dev/null
}

case "${1:-}" in
  rootfs) [[ $# -eq 2 ]] || die "usage: build.sh rootfs OUT.tar"; build_rootfs "$2" ;;
  import) [[ $# -eq 4 ]] || die "usage: build.sh import ROOTFS.tar IMAGE DIGEST"; import_rootfs "$2" "$3" "$4" ;;
  packages) packages ;;
  *) die "usage: build.sh rootfs OUT.tar | import ROOTFS.tar IMAGE DIGEST | packages" ;;
esac
