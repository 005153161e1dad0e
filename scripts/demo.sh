#!/usr/bin/env bash
# The main job, on one machine: installs what is needed, builds, starts a control plane (embedded
# SQLite in a temporary directory) and a worker on 127.0.0.1, submits a job, follows it to
# completion, shows its output, and stops both daemons.
#   scripts/demo.sh [COMMAND ARGS...]      (default: a small shell pipeline)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
port=${ENTROPY_DEMO_PORT:-8420}

if [ "$(id -u)" -eq 0 ]; then
    scripts/install-deps.sh demo
fi
[ -x configure ] || ./autogen.sh
mkdir -p build/default
if [ ! -f build/default/Makefile ]; then
    (cd build/default && "$top/configure" -q)
fi
make -C build/default -j"$(nproc)" >/dev/null
bin=$top/build/default

work=$(mktemp -d /tmp/entropy-demo.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "${ENTROPY_DEMO_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

umask 077
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/admin-token"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/worker-token"

echo "--- starting entropy-control on 127.0.0.1:$port (state in $work)"
"$bin/entropy-control" --config= --listen "127.0.0.1:$port" --database "$work/control.db" \
    --admin-token-file "$work/admin-token" --worker-token-file "$work/worker-token" \
    >"$work/control.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/control.log"; exit 1; }
    sleep 0.1
done

echo "--- starting entropy-worker"
"$bin/entropy-worker" --config= --control-url "http://127.0.0.1:$port" --token-file "$work/worker-token" \
    --state-directory "$work/worker" --worker-id demo-worker --poll-interval 500ms \
    >"$work/worker.log" 2>&1 &
pids+=($!)

ctl=("$bin/entropyctl" --url "http://127.0.0.1:$port" --token-file "$work/admin-token")
if [ $# -eq 0 ]; then
    set -- sh -c 'echo "hello from entropy on $(hostname), job $ENTROPY_JOB_ID, attempt $ENTROPY_ATTEMPT"'
fi

echo "--- submitting: $*"
rc=0
"${ctl[@]}" submit --wait -- "$@" || rc=$?

echo "--- jobs"
"${ctl[@]}" list-jobs
job=$("${ctl[@]}" --output=json list-jobs | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["job_id"])')
echo "--- job $job"
"${ctl[@]}" status "$job"
out=$("${ctl[@]}" --output=json status "$job" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("stdout_path") or "")')
if [ -n "$out" ] && [ -f "$out" ]; then
    echo "--- stdout of $job ($out)"
    cat "$out"
fi
echo "--- workers"
"${ctl[@]}" list-workers
exit $rc
