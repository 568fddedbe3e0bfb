#!/bin/sh
# Reference figures: bench/tcpecho + bench/wsload --raw, i.e. what plain TCP
# echo costs on this machine, to set mod_websocket's numbers against.
#
#   bench/run_reference.sh [PORT] [DURATION_SECS]
#
# Environment: TCPECHO_THREADS (default 2).  Prints one wsload summary line
# per configuration; everything it starts is stopped on exit.
set -eu

port=${1:-9000}           # outside net.ipv4.ip_local_port_range
secs=${2:-10}
threads=${TCPECHO_THREADS:-2}
dir=$(dirname "$0")

# tcpecho stops by itself after its --duration; the trap stops it sooner
"$dir/tcpecho" -p "$port" -T "$threads" --duration $((secs * 2 + 20)) &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true; wait "$echo_pid" 2>/dev/null || true' EXIT INT TERM

# wsload retries refused connections, but do not race the listener at all
i=0
until ss -Hltn "sport = :$port" | grep -q . || [ $i -ge 50 ]; do
    sleep 0.1
    i=$((i + 1))
done

run() {
    "$dir/wsload" --raw --duration "$secs" --warmup 1 --cpu-pid "$echo_pid" "$@" \
        "tcp://127.0.0.1:$port"
}

run -c 64 -s 32 -d 1
run -c 16 -s 64k -d 1
