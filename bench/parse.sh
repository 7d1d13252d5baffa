#!/usr/bin/env bash
# Part 10 parse throughput on the shared CT corpus (BenchmarkDotNet). Prints MB/s for metadata-only and full parses.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
corpus=${VIGIE_CT_CORPUS:-$root/.cache/ct-corpus}
if [ ! -f "$corpus/.complete" ]; then
  rm -rf "$corpus"
  /usr/bin/python3 "${VIGIE_SHARED:-$root/../shared}/tools/gen_ct_corpus.py" --out "$corpus" --n 200 --studies 4 --seed 1 >/dev/null
  touch "$corpus/.complete"
fi
export VIGIE_CT_CORPUS="$corpus"
cd "$root"
dotnet run -c Release --project bench/Vigie.Bench -- --filter '*ParseBenchmarks*' "$@"
