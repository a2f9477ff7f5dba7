#!/usr/bin/env bash
# Run the int8 face screen's tests on an emulated CPU with AVX2 but no AVX-512 or VNNI (Haswell),
# where onnxruntime's uint8 x int8 kernel adds products in 16 bits with saturation
# (bot/faces/screen.py). Needs Debian's qemu-user (QEMU 7.2 emulates AVX2):
#
#   apt-get install -y qemu-user
#   scripts/check-avx2.sh [pytest arguments]     # default: tests/test_face_index.py -k int8
#
# Slow (emulated: about a minute per test). NumPy's own AVX2 code is switched off under the
# emulator: with it, QEMU 7.2 got np.argsort of float32 wrong for every random array tried,
# which real AVX2 CPUs do not. onnxruntime still picks its AVX2 kernels.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v qemu-x86_64 >/dev/null; then
  echo "qemu-x86_64 not found: apt-get install -y qemu-user" >&2
  exit 1
fi
PYTHON=${PYTHON:-.venv/bin/python}
# Haswell less the features QEMU's TCG cannot emulate (it warns about each otherwise)
CPU=Haswell,-pcid,-x2apic,-tsc-deadline,-hle,-invpcid,-rtm
[ $# -gt 0 ] || set -- tests/test_face_index.py -k int8

PYTHONPATH=$PWD REUNITE_TEST_DATABASES=sqlite NPY_DISABLE_CPU_FEATURES=X86_V3 \
  qemu-x86_64 -cpu "$CPU" "$PYTHON" -m pytest -q -p no:cacheprovider "$@"
