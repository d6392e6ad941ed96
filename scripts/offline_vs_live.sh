#!/usr/bin/env bash
# offline_vs_live.sh — does `llmlab sim run` (virtual time) predict what
# `llmlab bench` measures against a live `llmlab sim`? Both send the same
# request stream (one arrival schedule, same seed) and judge it with the same
# run-file definitions, so they should agree. At three rates — light, the
# knee and over capacity, placed relative to the offline find-max so the
# check holds with any calibration — it prints completed rps, e2e p50/p95
# and TTFT p95 from each, the ratio live/offline and whether it is within
# TOL (default 5 %). Figures and command: docs/results.md.
#
# Usage: scripts/offline_vs_live.sh [extra engine flags for both, e.g. --max-num-seqs 8]
# Env: LLMLAB_BIN (bin/llmlab), DURATION (60s), ARRIVAL (poisson), SEED (1),
#      TOL (0.05), LIGHT KNEE OVER (fractions of the offline max rate: 0.3 0.9 1.25),
#      CLOSED (4: also a closed loop of that many clients, --concurrency; 0 skips it)
set -euo pipefail

BIN=${LLMLAB_BIN:-bin/llmlab}
DURATION=${DURATION:-60s}
ARRIVAL=${ARRIVAL:-poisson}
SEED=${SEED:-1}
TOL=${TOL:-0.05}
LIGHT=${LIGHT:-0.3}
KNEE=${KNEE:-0.9}
OVER=${OVER:-1.25}
CLOSED=${CLOSED:-4}
ENGINE=("$@")
if [ ${#ENGINE[@]} -eq 0 ]; then
	# Few seats keep the knee low enough that a 2-core machine streams it
	# in wall-clock time without falling behind.
	ENGINE=(--max-num-seqs 8)
fi
command -v jq >/dev/null || { echo "offline_vs_live: needs jq" >&2; exit 2; }
[ -x "$BIN" ] || { echo "offline_vs_live: no $BIN (make build)" >&2; exit 2; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 18931)
log=$(mktemp)
"$BIN" sim --port "$port" --startup-seconds 0 "${ENGINE[@]}" >"$log" 2>&1 &
sim=$!
trap 'kill "$sim" 2>/dev/null; wait "$sim" 2>/dev/null; rm -f "$log"' EXIT
url="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
	curl -fsS "$url/health" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fsS "$url/health" >/dev/null || { echo "live sim did not start:" >&2; cat "$log" >&2; exit 1; }

# The live sim's own lag behind its modelled step ends (a starved CPU makes
# every step late, which the offline run cannot show): sum and count.
steplag() {
	curl -fsS "$url/metrics" | awk '/^llmlab_sim_step_lag_seconds_sum/ {s=$2} /^llmlab_sim_step_lag_seconds_count/ {c=$2} END {print s+0, c+0}'
}

max=$("$BIN" sim run --find-max --json --duration "$DURATION" --arrival "$ARRIVAL" --seed "$SEED" "${ENGINE[@]}" | jq '.find_max.max_rate')
echo "engine flags: ${ENGINE[*]}; offline max rate under the SLO: $max req/s; $ARRIVAL arrivals, seed $SEED, $DURATION per run"
printf '%-6s %7s  %-9s %10s %10s %8s  %s\n' point rate metric offline live live/off "within $(jq -n "$TOL*100")%"
within=0
total=0
points=(light:$LIGHT knee:$KNEE over:$OVER)
[ "$CLOSED" -gt 0 ] && points+=("closed:$CLOSED")
for point in "${points[@]}"; do
	name=${point%%:*}
	if [ "$name" = closed ]; then
		rate="c=$CLOSED"
		common=(--concurrency "$CLOSED" --duration "$DURATION" --json)
	else
		rate=$(jq -n "$max * ${point#*:} * 100 | round / 100")
		common=(--rate "$rate" --duration "$DURATION" --arrival "$ARRIVAL" --seed "$SEED" --json)
	fi
	off=$("$BIN" sim run "${common[@]}" "${ENGINE[@]}" || true)
	read -r lag0 n0 < <(steplag)
	live=$("$BIN" bench --url "$url" "${common[@]}" --no-save --quiet || true)
	read -r lag1 n1 < <(steplag)
	echo "$name: live sim stepped $((${n1%.*} - ${n0%.*})) times, each ending on average $(jq -n "if $n1 == $n0 then 0 else ($lag1 - $lag0) / ($n1 - $n0) * 1e6 | round end") µs after its modelled end"
	if [ "$(jq -r '.results.generator_behind' <<<"$live")" = true ]; then
		echo "WARNING: the generator fell behind at $rate req/s: this machine, not the server, is measured" >&2
	fi
	for m in rps e2e_p50_s e2e_p95_s ttft_p95_s; do
		o=$(jq ".results.$m" <<<"$off")
		l=$(jq ".results.$m" <<<"$live")
		ratio=$(jq -n "if $o == 0 then 0 else $l / $o end")
		ok=$(jq -n "($ratio - 1) | fabs <= $TOL")
		total=$((total + 1))
		[ "$ok" = true ] && within=$((within + 1))
		printf '%-6s %7s  %-9s %10.4f %10.4f %8.3f  %s\n' "$name" "$rate" "${m%_s}" "$o" "$l" "$ratio" "$ok"
	done
done
echo "$within of $total figures within $(jq -n "$TOL*100")%"
