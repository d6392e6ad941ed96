#!/usr/bin/env bash
# The main job on the embedded default, end to end, on any machine:
#   1. start `llmlab serve` (gateway + supervisor; the worker is the simulated
#      vLLM engine modelling Qwen2.5-0.5B on an RTX 3050 4 GB),
#   2. send one request while the worker is STOPPED: the gateway holds it
#      through the cold start and answers once the worker is READY,
#   3. drive it with `llmlab bench` (the M0 workload, 200 in / 200 out),
#   4. show /status and a few metrics, then stop everything cleanly.
# QUICKSTART_RATE, QUICKSTART_DURATION and QUICKSTART_STARTUP override the
# defaults below (the real modelled cold start of the 4 GB card is ~35 s).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${LLMLAB_BIN:-bin/llmlab}
port=${QUICKSTART_PORT:-8080}
rate=${QUICKSTART_RATE:-5}
duration=${QUICKSTART_DURATION:-60s}
startup=${QUICKSTART_STARTUP:-5}
url="http://127.0.0.1:$port"

[ -x "$bin" ] || go build -o "$bin" ./cmd/llmlab
log=$(mktemp -t llmlab-serve.XXXXXX.log)

"$bin" serve --port "$port" --worker-startup-seconds "$startup" --idle-timeout 30s >"$log" 2>&1 &
serve_pid=$!
trap 'kill -TERM $serve_pid 2>/dev/null; wait $serve_pid 2>/dev/null || true' EXIT

for _ in $(seq 100); do
	curl -fs "$url/health" >/dev/null && break
	sleep 0.1
done
echo "== gateway up at $url, worker state: $(curl -s "$url/status" | sed -E 's/.*"state":"([A-Z]+)".*/\1/')"

echo "== one chat request, held through a ${startup}s cold start"
curl -s -w '\n   answered after %{time_total} s\n' "$url/v1/chat/completions" -H 'Content-Type: application/json' -d '{
  "model": "qwen2.5-0.5b-instruct", "temperature": 0, "max_tokens": 24,
  "messages": [{"role": "user", "content": "What does a supervisor do when the GPU worker is idle?"}]}'

echo "== llmlab bench: $rate req/s for $duration through the gateway"
"$bin" bench --url "$url" --rate "$rate" --duration "$duration" --profile throughput

echo "== /status"
curl -s "$url/status"
echo
echo "== some gateway metrics"
curl -s "$url/metrics" | grep -E '^llmlab_(worker_state|worker_starts_total|requests_total|queue_depth)' | head -20
echo "== gateway log: $log"
