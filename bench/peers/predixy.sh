#!/bin/sh
# Runs Predixy (github.com/joyieldInc/predixy, not packaged in Debian) as a
# kvbench proxy peer: writes its configuration for one cluster seed and
# execs it, so kvbench measures Predixy's own process. Two worker threads,
# as in the figures issue 14 quotes. PREDIXY names the binary (default:
# predixy on the PATH).
#
#   go run ./cmd/kvbench proxy -peer 'predixy=bench/peers/predixy.sh:{port} {seed} {dir}'
set -eu
if [ $# -ne 3 ]; then
  echo "usage: predixy.sh PORT SEED DIR" >&2
  exit 2
fi
port=$1 seed=$2 dir=$3
cat >"$dir/predixy.conf" <<EOT
Name kvbench-predixy
Bind 127.0.0.1:$port
WorkerThreads 2
ClientTimeout 300
Log $dir/predixy.log
LogVerbSample 0
LogDebugSample 0
LogInfoSample 0
LogNoticeSample 1
LogWarnSample 1
LogErrorSample 1
ClusterServerPool {
    MasterReadPriority 60
    RefreshInterval 1
    ServerFailureLimit 10
    ServerRetryTimeout 1
    Servers {
        + $seed
    }
}
EOT
exec "${PREDIXY:-predixy}" "$dir/predixy.conf"
