#!/usr/bin/env bash
# Side by side: direct vs `llmlab serve` (engine external) vs nginx (when
# installed) in front of a trivial backend, closed and open loop, one run.
# Prints throughput ratios to direct, added latency and CPU per request
# (docs/results.md, "Proxy side by side"). Arguments go to the driver
# (scripts/perf/sidebyside/main.go), e.g.:
#
#   scripts/perf/sidebyside.sh --duration 10s --concurrency 32 --rate 1000
#   scripts/perf/sidebyside.sh --nginx none            # skip nginx
#   GEN_CPUS=0-3 scripts/perf/sidebyside.sh --proxy-cpus 4-7 --backend-cpus 8-11
#   go build -o /tmp/floorproxy ./scripts/perf/floorproxy &&
#     scripts/perf/sidebyside.sh --llmlab /tmp/floorproxy   # the floor: net/http + internal/upstream only
#   scripts/perf/sidebyside.sh --cpuprofile gw.pprof         # profile llmlab serve's closed loop
#
# GEN_CPUS pins the load generator (the driver) with taskset; --proxy-cpus
# and --backend-cpus pin the others. Without them everything shares the
# machine's cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/llmlab" ./cmd/llmlab
go build -o "$bin/backend" ./scripts/perf/backend
go build -o "$bin/sidebyside" ./scripts/perf/sidebyside
pin=()
if [[ -n "${GEN_CPUS:-}" ]]; then pin=(taskset -c "$GEN_CPUS"); fi
"${pin[@]}" "$bin/sidebyside" --llmlab "$bin/llmlab" --backend "$bin/backend" "$@"
