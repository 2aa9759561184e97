#!/usr/bin/env bash
# The room on Redis: builds, starts a redis-server of its own (free loopback
# port, temporary directory, nothing saved) and two broadcast chat_servers
# in the room "demo" on it, then lets Ann (on server A) and Bob (on server
# B) talk through the example client, and prints what each of them saw.
# Everything it started is stopped by PID on exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build_dir=${BUILD_DIR:-build}
wait_s=30 # bound on every wait below; generous for a busy machine

say() { printf '[room-demo] %s\n' "$*"; }

bash scripts/setup.sh >/dev/null

tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits until `file` has a line equal to `line`.
wait_for_line() {
  local file=$1 line=$2 deadline=$((SECONDS + wait_s))
  until grep -qxF -- "$line" "$file" 2>/dev/null; do
    if ((SECONDS > deadline)); then
      say "no \"$line\" in $(basename "$file") within ${wait_s}s"
      exit 1
    fi
    sleep 0.05
  done
}

# redis-server on a free port: a port taken meanwhile makes it exit, and
# another is tried.
redis_port=
for _ in 1 2 3 4 5; do
  port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
    --loglevel warning >"$tmp/redis.log" 2>&1 &
  pid=$!
  deadline=$((SECONDS + wait_s))
  while kill -0 "$pid" 2>/dev/null && ! redis-cli -p "$port" ping >/dev/null 2>&1; do
    ((SECONDS < deadline)) || break
    sleep 0.05
  done
  if redis-cli -p "$port" ping >/dev/null 2>&1; then
    pids+=("$pid")
    redis_port=$port
    break
  fi
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
[[ -n $redis_port ]] || { say "cannot start redis-server"; cat "$tmp/redis.log"; exit 1; }
room=redis://127.0.0.1:$redis_port
say "redis-server on 127.0.0.1:$redis_port"

# Each server's first line gives its port.
start_server() {
  local name=$1
  "$build_dir/examples/chat_server" --address 127.0.0.1:0 --mode broadcast \
    --room "$room" --room-name demo >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  wait_for_line_matching "$tmp/$name.out"
  say "chat_server $name: $(head -n1 "$tmp/$name.out") --room $room --room-name demo"
}
wait_for_line_matching() {
  local deadline=$((SECONDS + wait_s))
  until grep -qE '^listening on 127\.0\.0\.1:[0-9]+$' "$1"; do
    ((SECONDS < deadline)) || { say "a chat_server did not start"; cat "${1%.out}.err"; exit 1; }
    sleep 0.05
  done
}
port_of() { sed -nE 's/^listening on 127\.0\.0\.1:([0-9]+)$/\1/p' "$tmp/$1.out"; }
start_server A
start_server B

# Ann and Bob: the interactive example client, each stdin line a message.
join() {
  local who=$1 server=$2
  mkfifo "$tmp/$who.in"
  "$build_dir/examples/chat_client" --target "127.0.0.1:$(port_of "$server")" --name "$who" \
    <"$tmp/$who.in" >"$tmp/$who.seen" 2>&1 &
  pids+=($!)
}
join Ann A
join Bob B
exec {ann}>"$tmp/Ann.in" {bob}>"$tmp/Bob.in"

# Each is in the room once it hears its own hello.
echo "hello" >&"$ann"
wait_for_line "$tmp/Ann.seen" "Ann: hello"
echo "hello" >&"$bob"
wait_for_line "$tmp/Bob.seen" "Bob: hello"
echo "hi Bob, Ann here on server A" >&"$ann"
wait_for_line "$tmp/Bob.seen" "Ann: hi Bob, Ann here on server A"
echo "hi Ann, Bob on server B" >&"$bob"
wait_for_line "$tmp/Ann.seen" "Bob: hi Ann, Bob on server B"
exec {ann}>&- # Ann leaves: Bob is told
wait_for_line "$tmp/Bob.seen" "Ann left the chat"
exec {bob}>&-

say "Ann, on server A, saw:"
sed 's/^/  /' "$tmp/Ann.seen"
say "Bob, on server B, saw:"
sed 's/^/  /' "$tmp/Bob.seen"
say "ok"
