#!/usr/bin/env bash
# Quick start: build, start the example echo server on a free port, run the
# example client's seed conversation against it, stop the server.
# Exits with the client's status.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build_dir=${BUILD_DIR:-build}
wait_s=30 # bound on every wait below; generous for a busy machine

say() { printf '[demo] %s\n' "$*"; }

bash scripts/setup.sh

server_pid=
tmp=$(mktemp -d)
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The server's stdout goes through a FIFO we keep open: `read -t` then waits
# for its first line with a deadline, and EOF on it tells when it has exited.
mkfifo "$tmp/server.out"
"$build_dir/examples/chat_server" --address 127.0.0.1:0 >"$tmp/server.out" &
server_pid=$!
exec {server_out}<"$tmp/server.out"

line=
if ! read -r -t "$wait_s" -u "$server_out" line; then
  say "chat_server exited or did not report its address within ${wait_s}s"
  exit 1
fi
if [[ ! $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]]; then
  say "unexpected first line from chat_server: $line"
  exit 1
fi
port=${BASH_REMATCH[1]}
say "chat_server $line"

say "chat_client --target http://127.0.0.1:$port"
client_status=0
timeout "$wait_s" "$build_dir/examples/chat_client" --target "http://127.0.0.1:$port" ||
  client_status=$?

# SIGINT is the server's clean stop; EOF on its stdout means it has exited.
kill -INT "$server_pid"
stopped=0
while :; do
  rc=0
  read -r -t "$wait_s" -u "$server_out" line || rc=$?
  ((rc == 0)) && continue # more output: keep draining
  ((rc > 128)) || stopped=1 # > 128 is the timeout, 1 is EOF
  break
done
if ((!stopped)); then
  say "chat_server did not stop within ${wait_s}s of SIGINT; killing it"
  kill -KILL "$server_pid"
fi
server_status=0
wait "$server_pid" || server_status=$?
server_pid=
((server_status == 0)) || say "chat_server exited with status $server_status"

if ((client_status == 0)); then say "ok"; else say "chat_client failed (status $client_status)"; fi
exit "$client_status"
