#!/usr/bin/env bash
# Ingest throughput, one run, same corpus, same client: dcmtk storescu into
#   storescp (files only), Orthanc (Debian package) and vigie serve (inspection, encryption, index, audit on),
# inside a private network namespace, TCP_NODELAY=1 on the dcmtk side. Prints img/s, MB/s and Vigie's ratios, each
# target's one-association run split on the wire (tcpdump), and the disk's own floor for durable stores (see
# bench/Vigie.Bench/Archive/DurableFloor.cs).
#   bench/ingest.sh [--parallel N] [--rounds R]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
parallel=4
rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --parallel) parallel=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ -z "${VIGIE_BENCH_NETNS:-}" ]; then
  need=()
  command -v storescu >/dev/null || need+=(dcmtk)
  command -v Orthanc >/dev/null || need+=(orthanc)
  command -v ip >/dev/null || need+=(iproute2)
  command -v unshare >/dev/null || need+=(util-linux)
  command -v tcpdump >/dev/null || need+=(tcpdump)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  corpus=${VIGIE_CT_CORPUS:-$root/.cache/ct-corpus}
  "$root/scripts/ct-corpus.sh" "$corpus" 1
  "$root/scripts/ct-corpus.sh" "$root/.cache/ct-warmup" 7
  "$root/bench/publish.sh" "$root/.cache/bench/vigie-r2r"
  dotnet build -c Release "$root/bench/Vigie.Bench" -v q -nologo >/dev/null
  unshare_=(unshare -n)
  [ "$(id -u)" -ne 0 ] && unshare_=(unshare -rn)
  exec "${unshare_[@]}" env VIGIE_BENCH_NETNS=1 VIGIE_CT_CORPUS="$corpus" "$0" --parallel "$parallel" --rounds "$rounds"
fi

# Inside the namespace: nothing else shares this loopback.
ip link set lo up
export TCP_NODELAY=1
corpus=$VIGIE_CT_CORPUS
warmup=$root/.cache/ct-warmup
vigie=$root/.cache/bench/vigie-r2r/vigie
work=$(mktemp -d /tmp/vigie-ingest-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

files=$(find "$corpus" -name '*.dcm' | wc -l)
bytes=$(find "$corpus" -name '*.dcm' -printf '%s\n' | awk '{s+=$1} END {print s}')
mb=$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b/1048576}')
echo "corpus: $files images, $mb MiB; $(nproc) cores; $parallel parallel associations; best of $rounds interleaved rounds, each on empty storage"

wait_port() { # port [called AE]
  for _ in $(seq 1 300); do
    echoscu -to 1 -aec "${2:-ANY-SCP}" 127.0.0.1 "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2; return 1
}
now() { date +%s.%N; }

# One association, the whole corpus.
send_one() { # aet port folder
  storescu -aec "$1" -pdu 131072 +sd +r +sp '*.dcm' 127.0.0.1 "$2" "$3" >/dev/null 2>"$work/storescu.err" || { cat "$work/storescu.err" >&2; return 1; }
}
# N associations at once, the corpus split between them.
send_parallel() { # aet port folder
  local list i
  find "$3" -name '*.dcm' | sort > "$work/files"
  split -n "r/$parallel" "$work/files" "$work/part."
  local ps=()
  for list in "$work"/part.*; do
    # shellcheck disable=SC2046
    storescu -aec "$1" -pdu 131072 127.0.0.1 "$2" $(cat "$list") >/dev/null 2>>"$work/storescu.err" & ps+=($!)
  done
  for i in "${ps[@]}"; do wait "$i" || { cat "$work/storescu.err" >&2; return 1; }; done
  rm -f "$work"/part.*
}
# Forty short associations of five warm-up files each. Code that runs once per association (negotiation, a store
# session's set-up, release) only reaches .NET's optimised tier after about thirty calls, and the warm-up corpus sent
# three times is three associations (twelve in parallel): without these, the timed run paid for that compilation on a
# background thread, 10 to 15 % of Vigie's CPU, which a server that has been up a while never pays.
warm_associations() { # aet port
  local list
  find "$warmup" -name '*.dcm' | sort | head -n 200 > "$work/warm-files"
  split -l 5 "$work/warm-files" "$work/warm."
  for list in "$work"/warm.*; do
    # shellcheck disable=SC2046
    storescu -aec "$1" -pdu 131072 127.0.0.1 "$2" $(cat "$list") >/dev/null 2>"$work/storescu.err" || { cat "$work/storescu.err" >&2; return 1; }
  done
  rm -f "$work"/warm.*
}
# Each round starts the target afresh on empty storage, warms it up with another corpus, then times the shared
# corpus: every timed store is a new instance. (Timing the same corpus again on the same storage would time the
# duplicate path, which each target handles its own way.)
srv=""
start_target() { # name dir
  mkdir -p "$2"
  case "$1" in
    storescp) storescp -aet STORESCP -od "$2" -pdu 131072 11401 >/dev/null 2>&1 & srv=$! ;;
    storescp-fork) storescp -aet STORESCP --fork -od "$2" -pdu 131072 11401 >/dev/null 2>&1 & srv=$! ;;
    orthanc)
      cat > "$2/orthanc.json" <<EOF
{ "Name": "BENCH", "StorageDirectory": "$2/storage", "IndexDirectory": "$2/index",
  "DicomAet": "ORTHANC", "DicomPort": 11401, "HttpPort": 18401, "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false, "DicomCheckCalledAet": false, "Plugins": [], "StorageCompression": false,
  "DicomThreadsCount": 4 }
EOF
      Orthanc "$2/orthanc.json" >"$2/log" 2>&1 & srv=$! ;;
    vigie) "$vigie" serve --data "$2/data" --dicom-port 11401 --http-port 18401 >"$2/log" 2>&1 & srv=$! ;;
  esac
  pids+=("$srv")
}
stop_target() { kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; }

# A store that fails ends the round, naming the target and showing the end of its log; the round is then run once
# more on new storage (Orthanc 1.10 now and then fails a store of its own with parallel associations: "create_directory:
# No such file or directory" in its storage folder), and a second failure ends the run.
failed() { # name send_fn phase dir
  echo "$1 ($2): a store failed during the $3" >&2
  [ -f "$4/log" ] && tail -n 20 "$4/log" >&2
  stop_target
  return 1
}
round() { # as timed_round
  timed_round "$@" && return 0
  echo "$1: running that round again" >&2
  timed_round "$1" "$2" "$3" "$4" "$5-again" || exit 1
}

declare -A single multi cpu_single cpu_multi client_single client_multi wire
breakdown=""
# Vigie's own histograms (sum and count), to say where one object's time went between its last byte and its answer.
vigie_metrics() { # file
  { curl -s --max-time 5 "http://127.0.0.1:18401/metrics" 2>/dev/null || true; } \
    | awk '/^vigie_(gateway_ingest_duration|gateway_ingest_spool|gateway_ingest_inspect|gateway_commit_write|gateway_commit_sync_wait|gateway_commit_flush|archive_commit_sync)_milliseconds_(sum|count)/ ||
           /^vigie_archive_objects_(landed|committed)_total/ {
        sub(/\{.*\}/, "", $1); print $1, $2 }' > "$1"
}
# Mean milliseconds per object of each stage over the timed run: the difference of two scrapes.
vigie_breakdown() { # before after
  awk 'FILENAME == ARGV[1] { before[$1] = $2; next } { delta[$1] = $2 - before[$1] }
    function mean(n) { c = delta[n "_milliseconds_count"]; return c > 0 ? delta[n "_milliseconds_sum"] / c : 0 }
    END { if (delta["vigie_gateway_ingest_duration_milliseconds_count"] > 0)
      printf "last byte to answer %.2f ms: spool completion %.2f, inspection %.2f, index rows %.2f (written while the object syncs), then the wait for it %.2f, the log write %.2f; the object'"'"'s sync job %.2f ms; %d of %d objects landed (landing record and one data flush; the others: file fsync begun at the last byte, rename, folder fsync)",
        mean("vigie_gateway_ingest_duration"), mean("vigie_gateway_ingest_spool"), mean("vigie_gateway_ingest_inspect"), mean("vigie_gateway_commit_write"),
        mean("vigie_gateway_commit_sync_wait"), mean("vigie_gateway_commit_flush"), mean("vigie_archive_commit_sync"),
        delta["vigie_archive_objects_landed_total"], delta["vigie_archive_objects_committed_total"] }' "$1" "$2"
}
# The same run seen on the wire (a capture of the one-association timed run, headers only), the same way for every
# target: the client's turn (from the answer to the next request), receiving an object (its first byte to its last),
# and from its last byte to the start of the answer. Nothing but the server's own clock tells the last of these apart.
wire_split() { # pcap
  tcpdump -r "$1" -n -tt 2>/dev/null | awk '
    $NF + 0 == 0 { next }
    {
      ts = $1; from_server = ($3 ~ /\.11401$/)
      if (!from_server) {
        if (phase != "request") { first = ts; bytes = 0; phase = "request" }
        last = ts; bytes += $NF
      } else {
        if (phase == "request") {
          if (bytes > 65536) {
            if (counted) { turn += first - previous; turns++ }
            receiving += last - first; answer += ts - last; n++; counted = 1
          } else counted = 0
          phase = "answer"
        }
        previous = ts
      }
    }
    END { if (n > 0) printf "client turn %.2f ms, receiving %.2f ms, last byte to answer %.2f ms (mean over %d objects)",
      turns ? 1000 * turn / turns : 0, 1000 * receiving / n, 1000 * answer / n, n }'
}
# Server CPU (user + system, reaped children included) in clock ticks.
server_cpu() { awk '{print $14+$15+$16+$17}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# CPU of this script's reaped children in clock ticks: the storescu clients of a timed run (find and split are noise).
client_cpu() { awk '{print $16+$17}' "/proc/$$/stat"; }
per_image() { awk -v c="$1" -v t="$(getconf CLK_TCK)" -v n="$files" 'BEGIN {printf "%.2f", c * 1000 / t / n}'; }
# One timed run of target $1 (AE $2) with send function $3; the best time so far is kept in $4[$1].
timed_round() { # name aet send_fn array round
  local dir="$work/$1-$3-$5" t0 t1 s c0 c1 k0 k1
  # Every target starts from the same memory: the page cache that earlier rounds' folders filled is dropped (root only;
  # best effort) and the corpora are read back in. On this virtual machine a page the host has taken back costs about
  # 7 µs to touch again, so writing into a cache that had grown over free memory cost far more than into pages just
  # freed (copy_folio_from_iter_atomic went from 2 % to 28 % of Vigie's CPU), which charged whichever target ran late.
  sync
  { echo 1 > /proc/sys/vm/drop_caches; } 2>/dev/null || true
  find "$corpus" "$warmup" -name '*.dcm' -exec cat {} + > /dev/null
  start_target "$1" "$dir"
  wait_port 11401 "$2"
  # JIT, caches, first index pages: the warm-up corpus, three times, sent the way the timed run sends (a server runs
  # for months, and has seen parallel associations before). The pause after each lets .NET's tiered JIT finish
  # recompiling hot methods in the background, as it has in any server up for more than a few seconds: without it, a
  # quarter of Vigie's CPU in the timed run went to the JIT.
  for _ in 1 2 3; do "$3" "$2" 11401 "$warmup" || { failed "$1" "$3" warm-up "$dir"; return 1; }; sleep 1; done
  warm_associations "$2" 11401 || { failed "$1" warm_associations warm-up "$dir"; return 1; }
  sleep 1
  if [ "$1" = vigie ]; then vigie_metrics "$dir/metrics-before"; fi
  local tp=""
  if [ "$3" = send_one ] && command -v tcpdump >/dev/null; then
    # Headers only, to a file: a few packets per 128 KiB PDU, next to nothing beside the run.
    tcpdump -i lo -s 96 -n -Z root -w "$dir/wire.pcap" tcp port 11401 >/dev/null 2>"$dir/tcpdump.err" & tp=$!
    for _ in $(seq 1 50); do grep -q listening "$dir/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
  fi
  k0=$(client_cpu); c0=$(server_cpu "$srv"); t0=$(now)
  "$3" "$2" 11401 "$corpus" || { failed "$1" "$3" "timed run" "$dir"; return 1; }
  t1=$(now); c1=$(server_cpu "$srv"); k1=$(client_cpu)
  if [ -n "$tp" ]; then sleep 0.2; kill -INT "$tp" 2>/dev/null || true; wait "$tp" 2>/dev/null || true; fi
  if [ "$1" = vigie ]; then vigie_metrics "$dir/metrics-after"; fi
  stop_target
  # The key folder goes with the data (it sits beside it, <data>.keys): without it `vigie stats` below cannot open the index.
  [ "$1" = vigie ] && [ "$5" = "$rounds" ] && [ "$3" = send_one ] && cp -r "$dir/data" "$work/vigie-data" && cp -r "$dir/data.keys" "$work/vigie-data.keys"
  # The round's folder stays until the end: on a file system without a journal (this machine's ext4), every file
  # created within minutes of a mass deletion makes the inode allocator step over the recently freed inodes, which
  # charged whichever target ran after a deletion (ext4 recently_deleted, about 10 % of Vigie's CPU in profiles).
  s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b-a}')
  local -n best_=$4
  if [ -z "${best_[$1]:-}" ] || awk -v s="$s" -v b="${best_[$1]}" 'BEGIN {exit !(s<b)}'; then
    best_[$1]=$s
    if [ "$3" = send_one ]; then
      cpu_single[$1]=$(per_image $((c1 - c0))); client_single[$1]=$(per_image $((k1 - k0)))
      if [ "$1" = vigie ]; then breakdown=$(vigie_breakdown "$dir/metrics-before" "$dir/metrics-after"); fi
      [ -s "$dir/wire.pcap" ] && wire[$1]=$(wire_split "$dir/wire.pcap")
    else
      cpu_multi[$1]=$(per_image $((c1 - c0))); client_multi[$1]=$(per_image $((k1 - k0)))
    fi
  fi
}

# Rounds interleave the targets, so a slow spell of this shared machine falls on all of them rather than on one.
# storescp: files only, never synced; one process for one association at a time, --fork for parallel associations.
# Orthanc: SQLite index, uncompressed storage. Vigie: the embedded default (SQLite, data folder), everything on.
for r in $(seq 1 "$rounds"); do
  round storescp STORESCP send_one single "$r"
  round orthanc ORTHANC send_one single "$r"
  round vigie VIGIE send_one single "$r"
  round storescp-fork STORESCP send_parallel multi "$r"
  round orthanc ORTHANC send_parallel multi "$r"
  round vigie VIGIE send_parallel multi "$r"
done
multi[storescp]=${multi[storescp-fork]}
cpu_multi[storescp]=${cpu_multi[storescp-fork]}; client_multi[storescp]=${client_multi[storescp-fork]}

# The disk alone: each corpus file written, flushed, renamed and its folder flushed, one after the other, with no
# network and no processing. Answering a store only once it is durable adds at least this to storescp's time.
floor=$(dotnet "$root/bench/Vigie.Bench/bin/Release/net10.0/Vigie.Bench.dll" durable-floor "$corpus" "$work/floor")
floor_s=$(echo "$floor" | sed -n 's/.*folder fsync \([0-9.]*\) s.*/\1/p')
pack_s=$(echo "$floor" | sed -n 's/.*fdatasync \([0-9.]*\) s.*/\1/p')

rate() { awk -v n="$files" -v s="$1" 'BEGIN {printf "%7.1f img/s %7.1f MB/s", n/s, '"$bytes"'/1e6/s}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b/a}'; }
# The best ratio to storescp that a flush of $2 seconds per corpus allows, on top of storescp's own $1.
ceiling() { awk -v a="$1" -v f="$2" 'BEGIN {printf "%.2f", a/(a+f)}'; }
echo
printf '%-10s %-44s %-44s\n' "" "one association" "$parallel associations"
for t in storescp orthanc vigie; do
  printf '%-10s %6ss %s     %6ss %s\n' "$t" "${single[$t]}" "$(rate "${single[$t]}")" "${multi[$t]}" "$(rate "${multi[$t]}")"
done
if [ ${#wire[@]} -gt 0 ]; then
  echo "one association on the wire (best round):"
  for t in storescp orthanc vigie; do printf '  %-10s %s\n' "$t" "${wire[$t]:-(no capture)}"; done
fi
echo "CPU per image (best round), server + storescu clients:"
for t in storescp orthanc vigie; do
  printf '  %-10s one association %5s + %5s ms     %s associations %5s + %5s ms\n' "$t" "${cpu_single[$t]}" "${client_single[$t]}" "$parallel" \
    "${cpu_multi[$t]}" "${client_multi[$t]}"
done
echo
echo "vigie / storescp: $(ratio "${single[vigie]}" "${single[storescp]}") (one association), $(ratio "${multi[vigie]}" "${multi[storescp]}") ($parallel associations)"
echo "$floor"
echo "  so, with an fsync before each answer, the best one association can do is $(ceiling "${single[storescp]}" "$floor_s") x storescp"
echo "  (with one flush per answer into an append-only pack file, as docs/archive.md sketches: $(ceiling "${single[storescp]}" "$pack_s") x storescp)"
awk -v st="${single[storescp]}" -v f="$pack_s" -v n="$files" 'BEGIN { if (f > 0)
  printf "  0.5 x storescp with one association allows %.2f ms per object on top of storescp'"'"'s own time; one flush into space already\n  allocated (a landing slot, a pack file) takes %.2f ms of it, leaving %.2f ms for the spool'"'"'s completion, inspection and the index commit\n",
    st * 1000 / n, f * 1000 / n, (st - f) * 1000 / n }'
if [ -n "$breakdown" ]; then echo "vigie, one association, per object (its metrics, best round): $breakdown"; fi
echo "vigie / orthanc:  $(ratio "${single[vigie]}" "${single[orthanc]}") (one association), $(ratio "${multi[vigie]}" "${multi[orthanc]}") ($parallel associations)"
# With parallel associations the clients and the server share the cores: a run takes at least (server + client CPU)
# x images / cores, so against Orthanc's measured time, Vigie's CPU per image bounds its ratio whatever else it does.
cores=$(nproc)
awk -v o="${cpu_multi[orthanc]}" -v oc="${client_multi[orthanc]}" -v v="${cpu_multi[vigie]}" -v vc="${client_multi[vigie]}" -v n="$files" \
    -v c="$cores" -v ot="${multi[orthanc]}" -v vt="${multi[vigie]}" -v p="$parallel" 'BEGIN {
  floor = (v + vc) * n / 1000 / c
  printf "  %d associations on %d cores: orthanc kept them %.0f %% busy, vigie %.0f %%; with its CPU, vigie / orthanc <= %.2f at full use\n",
    p, c, 100 * (o + oc) * n / 1000 / c / ot, 100 * floor / vt, ot / floor
  printf "  2 x orthanc there needs vigie at or under %.2f ms of CPU per image with these clients (it used %.2f)\n", ot * c * 1000 / n / 2 - vc, v
}'
# The same bound against storescp, which stores files and nothing else: what 2 x orthanc leaves Vigie's server beyond
# storescp's own CPU (its clients' too) at full use of the cores, next to what the hashing and sealing that the archive
# requires cost on this CPU alone (OpenSSL, which .NET uses for both, on one core, nothing else running).
crypto=""
if command -v openssl >/dev/null; then
  crypto=$(for a in sha256 aes-256-gcm; do openssl speed -seconds 1 -bytes 65536 -evp "$a" 2>/dev/null | tail -n 1; done \
    | awk -v b="$bytes" -v n="$files" '{ k = $NF; sub(/k$/, "", k); if (k > 0) { ms += b / n / (k * 1000) * 1000; got++ } }
      END { if (got == 2) printf "%.2f", ms }') \
    || crypto=""  # an OpenSSL without `speed` for one of them: the line goes without both, the run does not stop here
fi
awk -v sc="${cpu_multi[storescp]}" -v scc="${client_multi[storescp]}" -v st="${multi[storescp]}" -v ot="${multi[orthanc]}" \
    -v n="$files" -v c="$cores" -v p="$parallel" -v w="$crypto" 'BEGIN {
  margin = ot * c * 1000 / n / 2 - scc - sc
  printf "  2 x orthanc with %d associations is %.3f s, and storescp (files only, never synced) took %.3f s: at full use of the cores\n", p, ot / 2, st
  printf "  it leaves vigie %.2f ms of CPU per image beyond storescp'"'"'s own %.2f (storescp'"'"'s clients counted)", margin, sc
  if (w != "") printf "; SHA-256 and AES-256-GCM of the mean image alone take %.2f ms here (openssl speed)", w
  printf "\n"
}'
"$vigie" stats --data "$work/vigie-data" 2>/dev/null | sed 's/^/  vigie: /' || true
