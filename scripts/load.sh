#!/usr/bin/env bash
# Load-test the gateway on loopback: wrk against the echo upstream directly,
# then through the gateway with an API key, and print both side by side.
#
# The script builds the release binary, starts `portcullis echo` as the
# upstream, creates a store and a key with `portcullis init` in a temporary
# directory, starts `portcullis serve`, and runs wrk twice: a short warm-up
# and a measured run for each target. Every server listens on 127.0.0.1 and
# is stopped on exit. Besides wrk's rates and latency percentiles, it prints
# each server's CPU time per request during the measured runs and the
# gateway's peak resident set size (VmHWM in /proc/PID/status). It exits
# with status 1 if wrk saw socket errors or non-2xx responses.
#
# Environment:
#   DURATION      length of each measured wrk run, in wrk's units (default: 10s)
#   WARMUP        length of the unmeasured wrk run before each (default: 2s, or 0
#                 to skip it)
#   CONNECTIONS   open connections held by wrk (default: 64)
#   THREADS       wrk threads (default: 2)
#   UPSTREAM_PORT port of the echo upstream (default: 19101)
#   GATEWAY_PORT  port of the gateway (default: 19102)
#   GATEWAY_LOG   RUST_LOG for the gateway (default: warn, because at info
#                 every request writes an access log line to stderr)
#
# Requires wrk (Debian package `wrk`) and curl.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

duration="${DURATION:-10s}"
warmup="${WARMUP:-2s}"
connections="${CONNECTIONS:-64}"
threads="${THREADS:-2}"
upstream_port="${UPSTREAM_PORT:-19101}"
gateway_port="${GATEWAY_PORT:-19102}"
gateway_log="${GATEWAY_LOG:-warn}"
request_path="/api/v1/runs"

for tool in cargo wrk curl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "load: $tool not found. Install it (wrk: apt-get install -y wrk)" >&2
        exit 1
    fi
done

work_dir="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-load.XXXXXX")"
pids=()

# Stops the servers this script started, then removes the temporary directory.
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        # The gateway drains open connections on SIGTERM, so it gets 5 s
        # before SIGKILL.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits up to 10 s for a listener on 127.0.0.1:PORT. Fails if process PID
# exits first.
wait_for_port() {
    local port="$1" pid="$2" name="$3"
    for _ in $(seq 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "load: $name exited during startup. Its log follows:" >&2
            cat "$work_dir/$name.log" >&2
            exit 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "load: $name did not listen on 127.0.0.1:$port within 10 s" >&2
    exit 1
}

# Fails if something already listens on 127.0.0.1:PORT.
require_free_port() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        echo "load: port $1 is in use. Set UPSTREAM_PORT or GATEWAY_PORT to a free port" >&2
        exit 1
    fi
}

require_free_port "$upstream_port"
require_free_port "$gateway_port"

echo "load: building the release binary" >&2
binary="$(cargo build --release --message-format=json-render-diagnostics |
    grep -o '"executable":"[^"]*/portcullis"' | tail -n 1 | cut -d'"' -f4)"
if [[ -z "$binary" || ! -x "$binary" ]]; then
    echo "load: cargo build did not report the portcullis executable" >&2
    exit 1
fi

RUST_LOG=warn "$binary" echo --listen "127.0.0.1:$upstream_port" 2>"$work_dir/echo.log" &
echo_pid=$!
pids+=("$echo_pid")
wait_for_port "$upstream_port" "$echo_pid" echo

config="$work_dir/portcullis.toml"
cat >"$config" <<EOF
[server]
listen = "127.0.0.1:$gateway_port"

[metrics]
listen = "127.0.0.1:0"

[store]
url = "sqlite://$work_dir/portcullis.db"
bootstrap = false

# The default per-key limit (2000 a minute) would turn most of the run into
# 429 responses. This one is never reached, but the check still runs.
[limits.rate]
per_key = 4000000000

[[upstreams]]
name = "echo"
url = "http://127.0.0.1:$upstream_port"

[[routes]]
id = "api-read"
path = "/api/**"
methods = ["GET"]
permission = "runs:read"
upstream = "echo"
EOF

api_key="$(RUST_LOG=warn "$binary" init --config "$config" --json |
    grep -o '"api_key":"[^"]*"' | cut -d'"' -f4)"
if [[ -z "$api_key" ]]; then
    echo "load: portcullis init printed no api_key" >&2
    exit 1
fi

RUST_LOG="$gateway_log" "$binary" serve --config "$config" 2>"$work_dir/gateway.log" &
gateway_pid=$!
pids+=("$gateway_pid")
wait_for_port "$gateway_port" "$gateway_pid" gateway

upstream_url="http://127.0.0.1:$upstream_port$request_path"
gateway_url="http://127.0.0.1:$gateway_port$request_path"

status="$(curl -s -o /dev/null -w '%{http_code}' -H "x-api-key: $api_key" "$gateway_url")"
if [[ "$status" != 200 ]]; then
    echo "load: GET $gateway_url through the gateway returned $status, expected 200" >&2
    exit 1
fi

# Prints the CPU time that process PID has used, user plus system, in
# clock ticks.
cpu_ticks() {
    # Counted after the command name, which ends with ") ", utime is the
    # 12th field and stime the 13th.
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# Runs wrk against URL with any extra wrk arguments and writes its output
# to FILE. The CPU ticks that the upstream and the gateway used during the
# measured run go to FILE.cpu. A warm-up run comes first and is discarded.
run_wrk() {
    local file="$1" url="$2"
    shift 2
    if [[ "$warmup" != 0 ]]; then
        wrk -t"$threads" -c"$connections" -d"$warmup" "$@" "$url" >/dev/null
    fi
    local echo_before gateway_before
    echo_before="$(cpu_ticks "$echo_pid")"
    gateway_before="$(cpu_ticks "$gateway_pid")"
    wrk -t"$threads" -c"$connections" -d"$duration" --latency "$@" "$url" >"$file"
    echo "$(($(cpu_ticks "$echo_pid") - echo_before)) $(($(cpu_ticks "$gateway_pid") - gateway_before))" \
        >"$file.cpu"
    if grep -q -e 'Non-2xx' -e 'Socket errors' "$file"; then
        echo "load: wrk reported errors against $url:" >&2
        grep -e 'Non-2xx' -e 'Socket errors' "$file" >&2
        failed_runs=$((failed_runs + 1))
    fi
}
failed_runs=0

echo "load: wrk -t$threads -c$connections -d$duration (warm-up $warmup) against the upstream" >&2
run_wrk "$work_dir/direct.txt" "$upstream_url"
echo "load: the same through the gateway" >&2
run_wrk "$work_dir/gateway.txt" "$gateway_url" -H "x-api-key: $api_key"

if ! kill -0 "$gateway_pid" 2>/dev/null; then
    echo "load: the gateway exited during the run. Its log follows:" >&2
    cat "$work_dir/gateway.log" >&2
    exit 1
fi
gateway_peak_rss="$(awk '/^VmHWM:/ { print $2, $3 }' "/proc/$gateway_pid/status")"
upstream_peak_rss="$(awk '/^VmHWM:/ { print $2, $3 }' "/proc/$echo_pid/status")"

# Prints wrk's Requests/sec figure.
requests_per_second() {
    awk '/^Requests\/sec:/ { print $2 }' "$1"
}

# Prints wrk's latency at PERCENT ("50%", "99%") in milliseconds.
latency_ms() {
    awk -v percent="$2" '
        $1 == percent && NF == 2 {
            value = $2
            unit = value
            sub(/^[0-9.]+/, "", unit)
            sub(/[a-z]+$/, "", value)
            scale = (unit == "us") ? 0.001 : (unit == "ms") ? 1 : (unit == "s") ? 1000 : -1
            if (scale < 0) { print "?"; exit }
            printf "%.3f\n", value * scale
            exit
        }' "$1"
}

# Prints the CPU microseconds per request that process COLUMN (1: upstream,
# 2: gateway) used during the run whose wrk output is FILE.
cpu_us_per_request() {
    local requests
    requests="$(awk '/ requests in / { print $1 }' "$1")"
    awk -v column="$2" -v requests="$requests" -v hz="$(getconf CLK_TCK)" '
        { ticks = $column }
        END { if (requests > 0) printf "%.1f\n", ticks / hz * 1e6 / requests; else print "-" }' "$1.cpu"
}

# Prints B / A with two decimals.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f\n", b / a; else print "-" }'
}

echo
echo "wrk -t$threads -c$connections -d$duration, GET $request_path, $(nproc) CPUs, gateway RUST_LOG=$gateway_log"
printf '%-18s %12s %12s %16s\n' "" direct gateway "gateway/direct"
direct_rps="$(requests_per_second "$work_dir/direct.txt")"
gateway_rps="$(requests_per_second "$work_dir/gateway.txt")"
printf '%-18s %12s %12s %16s\n' "requests/s" "$direct_rps" "$gateway_rps" "$(ratio "$direct_rps" "$gateway_rps")"
for percent in 50% 75% 90% 99%; do
    direct_ms="$(latency_ms "$work_dir/direct.txt" "$percent")"
    gateway_ms="$(latency_ms "$work_dir/gateway.txt" "$percent")"
    printf '%-18s %12s %12s %16s\n' "p${percent%\%} latency (ms)" "$direct_ms" "$gateway_ms" \
        "$(ratio "$direct_ms" "$gateway_ms")"
done
printf '%-18s %12s %12s\n' "upstream CPU µs/req" \
    "$(cpu_us_per_request "$work_dir/direct.txt" 1)" "$(cpu_us_per_request "$work_dir/gateway.txt" 1)"
printf '%-18s %12s %12s\n' "gateway CPU µs/req" \
    "-" "$(cpu_us_per_request "$work_dir/gateway.txt" 2)"
echo
echo "gateway peak RSS (VmHWM): $gateway_peak_rss"
echo "upstream peak RSS (VmHWM): $upstream_peak_rss"

if ((failed_runs > 0)); then
    echo "load: $failed_runs of the 2 runs had error or non-2xx responses, so the figures above are invalid" >&2
    exit 1
fi
