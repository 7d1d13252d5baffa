#!/usr/bin/env bash
# Generates the shared synthetic CT corpus (200 images, 4 studies) into OUT unless it is already complete there.
# Deterministic: the same seed gives the same bytes. Used by the tests and by every bench.
#   scripts/ct-corpus.sh OUT [SEED]   (seed 1 is the shared corpus; the benches warm up on another seed)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$1
seed=${2:-1}
generator=${VIGIE_SHARED:-$root/../shared}/tools/gen_ct_corpus.py
[ -f "$out/.complete" ] && exit 0
if [ ! -f "$generator" ]; then
  echo "no $generator: cannot generate the CT corpus" >&2
  exit 1
fi
if ! /usr/bin/python3 -c 'import numpy, pydicom' 2>/dev/null; then
  echo "installing python3-numpy python3-pydicom" >&2
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends python3-numpy python3-pydicom >/dev/null
fi
rm -rf "$out"
/usr/bin/python3 "$generator" --out "$out" --n 200 --studies 4 --seed "$seed" >/dev/null
touch "$out/.complete"
