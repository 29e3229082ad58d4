#!/bin/sh
# The GET tail of a bare route on uvloop and on asyncio, at its own cost per request and at
# a heavier one, measured by wrk with one thread per CPU it has and with more threads than
# CPUs (benchmarks/README.md, "Which event loop"):
#
#     benchmarks/loop_tail.sh [SPIN_US ...]      # default: 0 35
#     WRK_THREADS="1 2" benchmarks/loop_tail.sh 35 # wrk thread counts to try (default: 1 2)
#
# Each case: uvicorn (httptools, one worker) on the last CPU, wrk (64 connections) on the
# others, 2 s warm-up, then three 5 s runs; prints p50, p99 and req/s of each run. With two
# CPUs wrk has one: at 2 threads its threads take turns on it, and what they measure
# includes that wait.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-$here/../.venv/bin/python}
last=$(($(nproc) - 1))
url="http://127.0.0.1:8959/api/core/users/platform-metadata/?platform_key=acme-corp"
for spin in ${*:-0 35}; do
  for threads in ${WRK_THREADS:-1 2}; do
    for loop in uvloop asyncio; do
        echo "$loop, +${spin} us per request, wrk -t $threads:"
        BARE_APP_SPIN_US=$spin taskset -c "$last" "$python" -m uvicorn bare_app:app \
            --app-dir "$here" --port 8959 --loop "$loop" --http httptools \
            --no-access-log --log-level warning &
        server=$!
        sleep 3
        taskset -c "0-$((last - 1))" wrk -t "$threads" -c 64 -d 2s -s "$here/get.lua" "$url" -- t >/dev/null
        for run in 1 2 3; do
            taskset -c "0-$((last - 1))" wrk --latency -t "$threads" -c 64 -d 5s -s "$here/get.lua" \
                "$url" -- t | grep -E '^ +(50|99)%|Requests/sec' | tr -s ' \n' ' '
            echo
        done
        kill "$server"
        wait "$server" 2>/dev/null || true
    done
  done
done
