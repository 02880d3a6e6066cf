#!/usr/bin/env bash
# Installs everything the toolkit needs on a fresh Debian/Ubuntu machine (system packages + Python),
# then returns. Used by the README's two set-up commands and by CI.
#   - Mesa EGL + llvmpipe: headless OpenGL for the raster renderer (the NVIDIA driver takes over on a GPU).
#   - LLVM 19: Mitsuba 3's CPU backend (drjit) crashes with older LLVMs; see dope_stream/render/pathtrace.py.
#   - g++, python3-dev: meshoptimizer (mesh simplification, dope_stream/assets.py) is published as source
#     only and compiles on install (python3-dev: headers for the distribution's own Python, which the
#     Debian-based and CUDA images use; a Python with its own headers just ignores them).
set -euo pipefail
cd "$(dirname "$0")"

SYSTEM_PACKAGES=(libegl1 libgl1 libgl1-mesa-dri libgles2 libllvm19 g++ python3-dev)

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: installing system packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
# torch/torchvision first, pinned to the builds these machines carry on disk (a plain `torch`
# would pull a newer multi-GB CUDA build from the network).
$PYTHON -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
$PYTHON -m pip install -q --disable-pip-version-check -e ".[pathtrace,test]"
echo "install.sh: done ($($PYTHON -c 'import dope_stream; print("dope-stream", dope_stream.__version__)'))"
