#!/usr/bin/env bash
# Publishes vigie as it would ship (Release, ReadyToRun, so start-up and first requests are not spent in the JIT)
# into the folder given. A RID-specific restore rewrites the lock files; they are put back as they were.
#   bench/publish.sh OUTDIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$1
saved=$(mktemp /tmp/vigie-locks.XXXXXX.tar)
trap 'tar -C "$root" -xf "$saved"; rm -f "$saved"' EXIT
(cd "$root" && git ls-files -z '*packages.lock.json' | xargs -0 tar -cf "$saved")
echo "publishing vigie (Release, ReadyToRun) into $out" >&2
dotnet publish "$root/src/Vigie.Cli" -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
  -o "$out" -v q -nologo >/dev/null
