#!/usr/bin/env bash
# Part 10 parse throughput on the shared CT corpus (BenchmarkDotNet). Prints MB/s for metadata-only and full parses.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
corpus=${VIGIE_CT_CORPUS:-$root/.cache/ct-corpus}
"$root/scripts/ct-corpus.sh" "$corpus" 1
export VIGIE_CT_CORPUS="$corpus"
cd "$root"
dotnet run -c Release --project bench/Vigie.Bench -- --filter '*ParseBenchmarks*' "$@"
