#!/usr/bin/env bash
# The honest A/B of issue 10 §4 (docs/results.md §14): the micro-batching
# window W = 0 / 20 / 50 ms under constant and bursty (gamma, CV ≈ 3)
# arrivals below, at and above the knee, and the degradation ladder (and
# deadline-aware admission) on vs off at 2x and 3x the knee. Every run is
# `llmlab bench` against a fresh `llmlab serve` with the simulated worker
# (default profile). Prints markdown tables; run files go to $OUT.
#
# Usage: scripts/ab_overload.sh [window|ladder|all]
# Environment: KNEE (RPS, default 6.9: docs/results.md §3), DURATION (per
# run, default 20s), WARMUP (default 4s), REPEATS (default 2), OUT (run
# files, default a temporary directory), OVERLOAD_ARGS (extra `llmlab
# serve` flags of the overload runs, default --max-in-flight 24: deadline
# admission can only bound a wait it sees, in the gateway's queue, so the
# places must be about the knee's concurrency; docs/admission.md),
# POLICIES (overload variants, default "off ladder deadline both").
# Exit codes: 0 done, 1 a run failed to start or write its file.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
KNEE=${KNEE:-6.9}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-4s}
REPEATS=${REPEATS:-2}
read -r -a OVERLOAD_ARGS <<<"${OVERLOAD_ARGS:---max-in-flight 24}"
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
bin=$(mktemp -d)/llmlab
go build -o "$bin" ./cmd/llmlab
serve_pid=""
cleanup() { if [[ -n $serve_pid ]]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# serve ARGS...: a fresh gateway with a warm worker.
serve() {
  cleanup
  port=$(free_port)
  "$bin" serve --port "$port" --worker-startup-seconds 0 --idle-timeout 0 --log-dir "$OUT/logs" --keep-logs "$@" >"$OUT/serve_$port.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' -d '{"prompt":"hi","max_tokens":4}' >/dev/null
}

# bench NAME RATE ARRIVAL SEED: one run; prints a table row's figures.
bench() {
  local name=$1 rate=$2 arrival=$3 seed=${4:-1} f="$OUT/$1.json" extra=()
  [[ $arrival == gamma ]] && extra=(--arrival gamma --burstiness 0.111) # shape 1/9: CV = 1/sqrt(shape) = 3
  [[ $arrival == constant ]] && extra=(--arrival constant)
  "$bin" bench --url "http://127.0.0.1:$port" --rate "$rate" --duration "$DURATION" --ramp 1s --warmup "$WARMUP" \
    --seed "$seed" --quiet --out "$f" "${extra[@]}" >/dev/null 2>&1 || true
  [[ -s $f ]] || { echo "run $name wrote no file" >&2; exit 1; }
  jq -r '.results | [ (.rps|.*100|round/100), (.e2e_p50_s|.*100|round/100), (.e2e_p95_s|.*100|round/100),
    (.ttft_p50_s*1000|round), (.goodput_rps|.*100|round/100), .completed, .failed ] | @tsv' "$f"
}

# median of a column over repeats
med() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

row() { # label then REPEATS lines of tsv on stdin
  local label=$1 lines
  lines=$(cat)
  local cols=()
  for c in 1 2 3 4 5 6 7; do cols+=("$(cut -f$c <<<"$lines" | med)"); done
  local spread
  spread=$(cut -f5 <<<"$lines" | sort -n | tr '\n' '/' | sed 's#/$##')
  printf '| %s | %s | %s | %s | %s | %s (%s) | %s | %s |\n' "$label" "${cols[0]}" "${cols[1]}" "${cols[2]}" "${cols[3]}" "${cols[4]}" "$spread" "${cols[5]}" "${cols[6]}"
}

header() { echo "| $1 | sustained RPS | p50 s | p95 s | TTFT p50 ms | goodput RPS (runs) | completed | failed |"; echo "|---|---|---|---|---|---|---|---|"; }

if [[ $what == window || $what == all ]]; then
  echo "### Micro-batching window (knee $KNEE RPS, $DURATION runs, median of $REPEATS)"
  header "W · arrivals · rate"
  for w in 0 20ms 50ms; do
    serve --batch-window "$w" --batch-max 16
    for arrival in constant gamma; do
      for f in 0.7 1.0 1.3; do
        rate=$(awk -v k="$KNEE" -v f="$f" 'BEGIN{printf "%.2f", k*f}')
        for r in $(seq "$REPEATS"); do bench "w${w}_${arrival}_${rate}_$r" "$rate" "$arrival" "$r"; done |
          row "W=$w · $arrival · $rate (${f}× knee)"
      done
    done
  done
fi

if [[ $what == ladder || $what == all ]]; then
  echo
  echo "### Overload: ladder and deadline-aware admission on vs off ($DURATION runs, median of $REPEATS; serve ${OVERLOAD_ARGS[*]})"
  header "policy · rate"
  for f in 2 3; do
    rate=$(awk -v k="$KNEE" -v f="$f" 'BEGIN{printf "%.2f", k*f}')
    for policy in ${POLICIES:-off ladder deadline both}; do
      args=("${OVERLOAD_ARGS[@]}")
      case $policy in
        ladder) args+=(--degrade --degrade-up-after 2s --degrade-cooldown 3s) ;;
        deadline) args+=(--deadline-admission) ;;
        both) args+=(--degrade --degrade-up-after 2s --degrade-cooldown 3s --deadline-admission) ;;
      esac
      for r in $(seq "$REPEATS"); do serve "${args[@]}"; bench "ovl_${policy}_${rate}_$r" "$rate" constant "$r"; done |
        row "$policy · $rate (${f}× knee)"
    done
  done
fi
echo
echo "run files: $OUT"
