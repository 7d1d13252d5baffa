#!/usr/bin/env bash
# Runs every Vigie test against real peers. Installs the Debian packages the tests need
# when they are missing, generates the shared CT corpus, starts a throw-away PostgreSQL,
# builds once and runs every test project.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
shared=${VIGIE_SHARED:-$root/../shared}

log() { printf '\033[1m[test]\033[0m %s\n' "$*"; }

# 1. Debian peers. Each is checked with dpkg so a machine that has them is not touched.
packages=(dcmtk orthanc python3-pydicom python3-numpy postgresql clamav clamav-daemon yara libyara9 openssl qpdf time systemd strace util-linux-extra libxml2-utils)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The shared synthetic CT corpus (deterministic: same seed, same bytes).
corpus=${VIGIE_CT_CORPUS:-$root/.cache/ct-corpus}
if [ ! -f "$corpus/.complete" ]; then
  log "generating the CT corpus in $corpus"
  VIGIE_SHARED="$shared" "$root/scripts/ct-corpus.sh" "$corpus" 1 || log "corpus tests will fail"
fi
export VIGIE_CT_CORPUS="$corpus"

# 3. A real PostgreSQL server, private to this run.
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
pgdir=$(mktemp -d /tmp/vigie-pg.XXXXXX)
pgport=$(( 20000 + RANDOM % 20000 ))
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres: "$pgdir"
cleanup() {
  as_postgres "$pgbin/pg_ctl" -D "$pgdir/data" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$pgdir"
}
trap cleanup EXIT
as_postgres "$pgbin/initdb" -D "$pgdir/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
as_postgres "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $pgport -k $pgdir -c fsync=on -c max_connections=200" start >/dev/null
export VIGIE_TEST_POSTGRES="Host=127.0.0.1;Port=$pgport;Username=postgres;Database=postgres;Pooling=true"
log "PostgreSQL on 127.0.0.1:$pgport"

# Tests must find their peers here; a missing peer is a failure, not a skip.
export VIGIE_TEST_REQUIRE_PEERS=1
export TCP_NODELAY=1
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# 4. Build once, then every test project.
log "building"
dotnet build Vigie.slnx -c Release -nologo -v q
log "testing"
dotnet test --solution Vigie.slnx -c Release --no-build "$@"
