#!/usr/bin/env bash
# A ~1 GiB JSONL upload beside `POST /runs`: while `curl -T` sends the dataset, a one-case
# inline run is posted every 0.5 s and each answer timed; prints how many were answered,
# their p50, p99 and max, and how long the upload took. The target: every `POST /runs`
# within 500 ms. Too large for the test suite (minutes, ~3 GB of disk); run by hand:
#
#   cargo build --release --bin themis
#   benches/upload_beside_runs.sh [target/release/themis] [scratch dir]
#
# The dataset (generated once, kept in the scratch dir) and a fresh database live in the
# scratch dir (default: a directory under /tmp). `THEMIS_UPLOAD_MB` changes the size.
set -euo pipefail

bin=${1:-target/release/themis}
scratch=${2:-${TMPDIR:-/tmp}/themis-upload-bench}
megabytes=${THEMIS_UPLOAD_MB:-1000}
port=${THEMIS_BENCH_PORT:-18431}
mkdir -p "$scratch"
data="$scratch/cases-${megabytes}mb.jsonl"

if [ ! -s "$data" ]; then
  echo "generating $data (~$megabytes MB)" >&2
  python3 - "$data" "$megabytes" <<'EOF'
import sys
path, limit = sys.argv[1], int(sys.argv[2]) * 1_000_000
written, i = 0, 0
with open(path, "w", buffering=1 << 20) as out:
    while written < limit:
        lines = []
        for j in range(i, i + 10_000):
            lines.append('{"case_id":"c%d","input":{"question":"%d + %d"},"expected_output":{"answer":"%d"}}\n'
                         % (j, j % 97, j % 13, j % 97 + j % 13))
        i += 10_000
        text = "".join(lines)
        out.write(text)
        written += len(text)
EOF
fi

rm -f "$scratch"/bench.db*
log="$scratch/serve.log"
"$bin" serve --addr "127.0.0.1:$port" --database "sqlite://$scratch/bench.db" \
  --log-format json >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 100); do
  curl -sf "$base/healthz" >/dev/null && break
  sleep 0.1
done

times="$scratch/post-times.txt"
: >"$times"
started=$(date +%s.%N)
curl -s -o "$scratch/upload-answer.json" -w '%{http_code} %{time_total}\n' \
  -H 'content-type: application/x-ndjson' -T "$data" "$base/datasets/big" \
  >"$scratch/upload-status.txt" &
upload=$!

i=0
while kill -0 "$upload" 2>/dev/null; do
  i=$((i + 1))
  body='{"generation":{"generator":{"name":"builtin/demo_generator"}},"evaluation":{"metrics":["builtin/exact_match"]},"datasets":[{"dataset_id":"small","cases":[{"case_id":"only","input":{"question":"'$i' + 1"},"expected_output":{"answer":"x"}}]}],"seeds":['$i']}'
  # In the background, so a slow answer does not delay the next POST.
  (
    now=$(date +%s.%N)
    curl -s -o /dev/null -w "%{http_code} %{time_total} $now\n" \
      -H 'content-type: application/json' -d "$body" "$base/runs" >>"$times"
  ) &
  sleep 0.5
done
# Only the upload and the POSTs: the server is a child of this shell too.
wait "$upload"
while [ "$(jobs -rp | grep -cvx "$server")" -gt 0 ]; do sleep 0.1; done

python3 - "$times" "$started" "$scratch/upload-status.txt" <<'EOF'
import sys
times, started, upload = sys.argv[1], float(sys.argv[2]), sys.argv[3]
rows = [line.split() for line in open(times) if line.strip()]
ok = sorted(float(t) * 1000 for code, t, _ in rows if code in ("200", "202"))
bad = [r for r in rows if r[0] not in ("200", "202")]
slow = sorted(((float(t) * 1000, float(at) - started) for code, t, at in rows if float(t) > 0.5),
              reverse=True)
pick = lambda q: ok[min(len(ok) - 1, int(q * len(ok)))] if ok else float("nan")
code, took = open(upload).read().split()
print(f"upload: HTTP {code} after {float(took):.1f} s")
print(f"POST /runs: {len(ok)} answered ({len(bad)} not 2xx); p50 {pick(0.5):.0f} ms, "
      f"p99 {pick(0.99):.0f} ms, max {max(ok, default=float('nan')):.0f} ms; "
      f"{sum(1 for t in ok if t <= 500)} within 500 ms")
for ms, at in slow[:10]:
    print(f"  slow: {ms:.0f} ms, sent {at:.1f} s into the upload")
if len(slow) > 10:
    print(f"  ({len(slow) - 10} more above 500 ms)")
EOF
