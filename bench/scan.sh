#!/usr/bin/env bash
# Scan throughput, one run, same corpus, equivalent signatures: clamscan and yara -p2 beside vigie scan
# (every structural analyser on, plus the same signatures). The signatures are generated (deterministic), written
# as Vigie's rules folder, then exported by `vigie signatures export` for clamscan and yara.
#   bench/scan.sh [--rounds R] [--corpus DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=3
corpus=${VIGIE_CT_CORPUS:-$root/.cache/ct-corpus}
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --corpus) corpus=$2; shift 2 ;;
    -h|--help) sed -n 2,5p "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

need=()
command -v clamscan >/dev/null || need+=(clamav)
command -v yara >/dev/null || need+=(yara)
[ -e /usr/lib/x86_64-linux-gnu/libyara.so.9 ] || [ -e /usr/lib/x86_64-linux-gnu/libyara.so.10 ] || need+=(libyara9)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

"$root/scripts/ct-corpus.sh" "$corpus" 1

work=$(mktemp -d /tmp/vigie-scan-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$root/bench/publish.sh" "$root/.cache/bench/vigie-r2r"
vigie=$root/.cache/bench/vigie-r2r/vigie

# Equivalent signatures: 500 body patterns (some with wildcards and gaps), 2,000 SHA-256 and 500 sized MD5
# hashes, 20 logical signatures. Random bytes, so none matches the corpus: every engine scans everything.
/usr/bin/python3 - "$work/rules" <<'EOF'
import os, random, sys
out = sys.argv[1]; os.makedirs(out)
r = random.Random(20261202)
hexs = lambda n: ''.join('%02x' % r.randrange(256) for _ in range(n))
with open(f'{out}/bench.ndb', 'w') as f:
    for i in range(500):
        p = hexs(8) + '??' + hexs(7) if i % 5 == 0 else hexs(6) + '{2-8}' + hexs(6) if i % 7 == 0 else hexs(16)
        f.write(f'Bench.Body.{i}:0:*:{p}\n')
with open(f'{out}/bench.sha256', 'w') as f:
    for i in range(2000):
        f.write(f'{hexs(32)}  Bench.Sha256.{i}\n')
with open(f'{out}/bench.hdb', 'w') as f:
    for i in range(500):
        f.write(f'{hexs(16)}:{r.randrange(100, 10**7)}:Bench.Md5.{i}\n')
with open(f'{out}/bench.ldb', 'w') as f:
    for i in range(20):
        f.write(f'Bench.Logical.{i};Engine:51-255,Target:0;0&(1|2);{hexs(10)};{hexs(10)};{hexs(12)}\n')
EOF
"$vigie" signatures check "$work/rules"
"$vigie" signatures export "$work/rules" --clamav "$work/clamav" --yara "$work/rules.yar" >/dev/null

files=$(find "$corpus" -name '*.dcm' | wc -l)
bytes=$(find "$corpus" -name '*.dcm' -printf '%s\n' | awk '{s+=$1} END {print s}')
mb=$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b/1048576}')
echo "corpus: $files files, $mb MiB; $(nproc) cores; best of $rounds rounds (page cache warm)"

now() { date +%s.%N; }
best() { # name command... ; prints best seconds
  local name=$1; shift
  local b="" t0 t1 s rc
  for _ in $(seq 1 "$rounds"); do
    t0=$(now)
    set +e; "$@" >"$work/$name.out" 2>"$work/$name.err"; rc=$?; set -e
    t1=$(now)
    if [ "$rc" -ne 0 ]; then echo "$name failed (exit $rc):" >&2; tail -5 "$work/$name.err" "$work/$name.out" >&2; exit 1; fi
    s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b-a}')
    if [ -z "$b" ] || awk -v s="$s" -v b="$b" 'BEGIN {exit !(s<b)}'; then b=$s; fi
  done
  echo "$b"
}

cat "$corpus"/*/*.dcm >/dev/null 2>&1 || find "$corpus" -name '*.dcm' -exec cat {} + >/dev/null
t_clam=$(best clamscan clamscan --no-summary --infected -r -d "$work/clamav" "$corpus")
t_yara=$(best yara yara -p 2 -r "$work/rules.yar" "$corpus")
t_vigie=$(best vigie "$vigie" scan -r --rules "$work/rules" "$corpus")
t_vigie_json=$(best vigie-json "$vigie" scan -r --json --rules "$work/rules" "$corpus")

# The same corpus five times over (hard links: same bytes, same page cache), so start-up weighs less.
mkdir -p "$work/x5"
for i in 1 2 3 4 5; do cp -al "$corpus" "$work/x5/$i"; done
t5_clam=$(best clamscan5 clamscan --no-summary --infected -r -d "$work/clamav" "$work/x5")
t5_yara=$(best yara5 yara -p 2 -r "$work/rules.yar" "$work/x5")
t5_vigie=$(best vigie5 "$vigie" scan -r --rules "$work/rules" "$work/x5")

row() { awk -v n="$1" -v t="$2" -v b="$bytes" -v f="$files" 'BEGIN {printf "%-34s %8.3f s %9.1f MB/s %8.0f files/s\n", n, t, b/1e6/t, f/t}'; }
echo
row "clamscan (1 process)" "$t_clam"
row "yara -p2" "$t_yara"
row "vigie scan (all analysers + sigs)" "$t_vigie"
row "vigie scan --json" "$t_vigie_json"
echo
awk -v c="$t_clam" -v y="$t_yara" -v v="$t_vigie" 'BEGIN {
  printf "vigie / clamscan: %.2fx (target >= 5x)\n", c/v
  printf "vigie / yara -p2: %.2fx (target >= 1x)\n", y/v }'
echo "(times include each tool's start-up and signature loading)"
echo
echo "corpus x5 ($files x 5 files):"
bytes1=$bytes; bytes=$((bytes1 * 5)); files1=$files; files=$((files1 * 5))
row "clamscan (1 process)" "$t5_clam"
row "yara -p2" "$t5_yara"
row "vigie scan (all analysers + sigs)" "$t5_vigie"
awk -v c="$t5_clam" -v y="$t5_yara" -v v="$t5_vigie" 'BEGIN {
  printf "vigie / clamscan: %.2fx, vigie / yara -p2: %.2fx\n", c/v, y/v }'
