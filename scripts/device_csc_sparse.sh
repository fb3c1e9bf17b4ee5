#!/usr/bin/env bash
# Issue 14's GPU check (chen2024 CSC's sparse-voxel conv on CUDA), prepared for the lent GPU machine: the
# CUDA tests of tests/test_sparse_conv.py (this op on CUDA = on CPU; spconv = this op), then
# `python -m bevlib.bench sparse` on CUDA (ours, the matmul floor, dense conv3d where it fits, and spconv
# where it imports) and, for the ratio, on that machine's CPU. Results land in $OUT.
#
# On the GPU machine only torch and the usual scientific stack are installed. Two things travel in .whl/
# (git-ignored), made once here, from the repo root:
#   * pyquaternion, which `python -m bevlib.bench` needs (bevlib.geometry):
#       python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#           --platform manylinux2014_x86_64 -d .whl pyquaternion==0.9.9
#   * spconv 2.3.8 for CUDA 12.6 with cumm and their pure-Python needs, as one 45 MB xz archive of
#     site-packages (the wheels are 98 MB, over the tool's 64 MiB per call):
#       bash scripts/pack_spconv_for_device.sh
# Then call the device tool: run(command="bash scripts/device_csc_sparse.sh", carry=[".whl"], timeout_s=480).
# Without the archive the spconv rows say "spconv does not import" and its CUDA test skips.
set -uo pipefail
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
SITE=/tmp/site
mkdir -p "$SITE"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q -c constraints.txt --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl || exit 1
fi
tag=$(python3 -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
if [ -f ".whl/spconv-site-$tag.tar.xz" ]; then
    tar -xJf ".whl/spconv-site-$tag.tar.xz" -C "$SITE" || exit 1
fi
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
nvidia-smi -L || true
python3 -c "import torch, bevlib.models.sparse_conv as sc; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available(), 'spconv imports', sc.spconv_imports(), 'backend', sc.backend())" || exit 1
# --noconftest: the shared fixtures build the embedded world (nuscenes-devkit, shapely), not needed here
timeout 240 python3 -m pytest --noconftest -q -rs -p no:cacheprovider tests/test_sparse_conv.py 2>&1 \
    | tee "$OUT/pytest_sparse_conv.log" || status=1
for dev in cuda cpu; do
    # the whole synthetic sweep (dense conv3d does not fit), then a 4 m crop where it does
    for crop in "" "--crop 4"; do
        name="sparse_${dev}${crop:+_crop4}"
        timeout 120 python3 -m bevlib.bench sparse --device "$dev" --synthetic --threads 16 $crop \
            --out "$OUT/$name.json" 2>&1 | tee "$OUT/$name.log" || status=1
    done
done
exit $status
