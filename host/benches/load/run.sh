#!/usr/bin/env bash
# HTTP load test: a release `offerhost demo` on loopback, driven by wrk.
#   bash host/benches/load/run.sh [DURATION] [CONNECTIONS]
# Needs wrk (apt-get install wrk). Prints wrk's throughput and latency distribution.
set -euo pipefail
cd "$(dirname "$0")/../../.."
duration=${1:-15s}
connections=${2:-32}
cargo build --release -p offerhost >&2
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
out=$(mktemp)
RUST_LOG=warn ./target/release/offerhost demo --listen "127.0.0.1:$port" >"$out" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q '^Stop with' "$out" && break; sleep 0.1; done
APP=$(awk '$2 == "demo-app" {print $3}' "$out")
export APP
echo "wrk -t2 -c$connections -d$duration against POST /v1/slates (4 example plugins)" >&2
wrk -t2 -c"$connections" -d"$duration" --latency -s host/benches/load/slate.lua "http://127.0.0.1:$port"
