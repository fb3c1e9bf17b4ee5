#!/usr/bin/env bash
# Pack spconv 2.3.8 for CUDA 12.6 and what it needs beyond the GPU machine's image into one xz archive
# of site-packages, .whl/spconv-site-cp<VER>.tar.xz (or in DEST), for scripts/device_csc_sparse.sh to unpack there.
# As wheels these are 98 MB (spconv's core library alone is 284 MB unpacked), over the device tool's
# 64 MiB per call; xz brings them to about half that. Run here, where pip reaches the index:
#   bash scripts/pack_spconv_for_device.sh                  # cp312, the GPU machine's Python, into .whl/
#   bash scripts/pack_spconv_for_device.sh 3.11 /tmp/try    # this machine's Python, to try the archive
#                                                           # here (keep it out of .whl: one per call fits)
# cumm-cu126 carries its own NVRTC 12.6; pybind11, ninja, requests, portalocker, sympy and numpy are in
# the GPU machine's image (/work/.library/device/KINDS.md), so they are left out.
set -euo pipefail
PYVER=${1:-3.12}
TAG=cp${PYVER/./}
DEST=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WORK/wheels" spconv-cu126==2.3.8 "cumm-cu126>=0.7.11,<0.8.0" pccm==0.4.16 ccimport==0.4.4 \
    fire==0.7.1 termcolor lark
DEST=${DEST:-$ROOT/.whl}
mkdir -p "$WORK/site" "$DEST"
for w in "$WORK"/wheels/*.whl; do
    "$PY" -m zipfile -e "$w" "$WORK/site"
done
# zipfile drops the executable bit; the bundled shared libraries need it
find "$WORK/site" -name '*.so*' -exec chmod 755 {} +
out="$DEST/spconv-site-$TAG.tar.xz"
tar -C "$WORK/site" -cf - . | xz -T2 -6 > "$out.tmp"
mv "$out.tmp" "$out"
ls -l "$out"
