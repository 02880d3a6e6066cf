#!/usr/bin/env bash
# A Debian bookworm base image built from Debian's packages (debootstrap + docker import), for
# machines that reach a Debian mirror but no container registry. It stands in for the public
# python:3.11-slim-bookworm: Debian 12's Python 3.11 in a virtual environment on PATH (Debian's own
# Python refuses pip installs, PEP 668), with pip and CA certificates. The machine's own site CAs
# (/usr/local/share/ca-certificates, e.g. of a TLS-inspecting proxy in front of PyPI) are trusted
# in it too, so builds on this base reach PyPI as the machine does.
#   sudo bash docker/build-base.sh [TAG]          (default dope-base:bookworm)
#   docker build -f docker/Dockerfile.cpu --build-arg BASE_IMAGE=dope-base:bookworm ...
# Needs root, debootstrap and a running Docker engine. DEBIAN_MIRROR overrides the mirror.
set -euo pipefail
TAG=${1:-dope-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

root=$(mktemp -d /tmp/dope-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$root" "$MIRROR"
chroot "$root" python3 -m venv /opt/python
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates
fi
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
tar -C "$root" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["bash"]' \
    - "$TAG"
echo "build-base.sh: $TAG ($(docker run --rm --network none "$TAG" python --version))"
