#!/usr/bin/env bash
# bench-base:local, for machines that cannot pull from a registry: Debian bookworm from the host's own apt mirror
# (debootstrap), with Python 3.11 (and libpython, which torch_xla links), pip, venv, CA certificates and the host's
# CA bundle (for TLS-inspecting proxies), imported into Docker.
# Usage: scripts/base-image.sh [TAG]   (needs root, debootstrap and a running Docker engine)
set -euo pipefail
tag=${1:-bench-base:local}
docker=${DOCKER:-docker}
# The host's own mirror: the first URI of its apt sources (deb822 or one-line format).
mirror=${DEBIAN_MIRROR:-$({ cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } \
    | sed -n 's/^URIs: *//p; s/^deb  *\(\[[^]]*\] *\)\{0,1\}\(http[^ ]*\) .*/\2/p' | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || { echo "base-image: debootstrap is missing. Fix: apt-get install debootstrap" >&2; exit 2; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "base-image: debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,libpython3.11,ca-certificates bookworm "$root" "$mirror" \
    > "$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; exit 1; }
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | "$docker" import --change 'CMD ["/bin/bash"]' - "$tag"
rm -f "$root.log"
echo "base-image: $tag"
