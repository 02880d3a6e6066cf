#!/usr/bin/env bash
# Builds dope-stream:cpu where no container registry is reachable but PyPI and a Debian mirror are:
# the base from Debian's packages (docker/build-base.sh, once), then docker/Dockerfile.cpu on it with
# --network host. Wheel indexes on this machine's disk (the file:// entries of pip's extra-index-url,
# where this machine keeps its torch builds) are served to the build on loopback, in the same order,
# so `pip install torch==...` in install.sh resolves as it does here; no wheel enters the repository
# or the build context.
#   bash docker/build-cpu.sh [TAG]        (default dope-stream:cpu; BASE_IMAGE=... to use another base)
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-dope-stream:cpu}
BASE=${BASE_IMAGE:-dope-base:bookworm}
docker image inspect "$BASE" >/dev/null 2>&1 || bash docker/build-base.sh "$BASE"

served=$(mktemp -d /tmp/dope-wheels.XXXXXX)
server=""
trap '[ -z "$server" ] || kill "$server"; rm -rf "$served"' EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
indexes=()
for url in $(python3 -m pip config get global.extra-index-url 2>/dev/null || true); do
    if [[ "$url" != file://* ]]; then
        indexes+=("$url")
        continue
    fi
    # serve the index's parent folder: its pages link to archives beside it (../../files/...)
    index=${url#file://}
    index=${index%/}
    link="$served/${#indexes[@]}"
    ln -s "$(dirname "$index")" "$link"
    indexes+=("http://127.0.0.1:$port/$(basename "$link")/$(basename "$index")/")
done
if [ -n "$(ls -A "$served")" ]; then
    python3 -m http.server --bind 127.0.0.1 --directory "$served" "$port" >/dev/null 2>&1 &
    server=$!
fi
echo "build-cpu.sh: base $BASE, extra wheel indexes: ${indexes[*]:-none}"
docker build --network host -f docker/Dockerfile.cpu --build-arg BASE_IMAGE="$BASE" \
    --build-arg PIP_EXTRA_INDEX_URL="${indexes[*]:-}" -t "$TAG" .
