#!/usr/bin/env bash
# Installs what libchat needs from Debian (only what is missing), then
# configures (once) and builds into build/.
#
#   BUILD_DIR=dir   build tree (default: build, relative to the repo root)
#   CMAKE_ARGS=...  extra configure arguments; given, they force a configure
#
# Safe to run again: nothing is installed or configured twice; the build is
# incremental. With CI set (CI=true), warnings are errors (-DCHAT_WERROR=ON).
# Run through sudo, the build tree and node_modules are given back to the
# user who ran sudo (scripts/ownership.sh).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build_dir=${BUILD_DIR:-build}
start=$SECONDS
# shellcheck source=ownership.sh
source scripts/ownership.sh
trap 'give_back "$build_dir" bindings/node/node_modules' EXIT

say() { printf '[setup] %s\n' "$*"; }

packages=(
  cmake ninja-build g++ pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libgtest-dev pybind11-dev python3-dev python3-pytest strace
  python3-grpcio python3-protobuf python3-mypy python3-h2
  abigail-tools  # abidw/abidiff: the C ABI against its committed baseline
  clang-14 libclang-rt-14-dev
  # the benchmark's grpc-go peer, built offline in GOPATH mode; and
  # golang-google-grpc-dev's health.proto and reflection.proto, which
  # libchat embeds (core/CMakeLists.txt)
  golang-go golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev
  protoc-gen-go protoc-gen-go-grpc
  # the broadcast room on Redis Streams (core/src/redis_room.cc) and its
  # tests, which start their own redis-server on a free loopback port in a
  # temporary directory: nothing uses a system-wide redis the package may run
  redis-server libhiredis-dev
)
missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
  say "installing ${#missing[@]} package(s): ${missing[*]}"
  sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || { say "not root and no sudo: install them as root"; exit 1; }
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
else
  say "packages: all ${#packages[@]} present"
fi

# Debian's interpreter has grpcio and protobuf; a pyenv python3 on PATH has not.
configure=(cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release
           -DPython_EXECUTABLE=/usr/bin/python3)
mapfile -t ci_args < <(ci_cmake_args)
configure+=("${ci_args[@]}")
# CMAKE_ARGS is split on spaces on purpose: it carries several -D options.
# shellcheck disable=SC2206
if [[ -n ${CMAKE_ARGS:-} ]]; then configure+=(${CMAKE_ARGS}); fi

cache=$build_dir/CMakeCache.txt
# A tree configured before CI asked for -Werror is configured again.
werror_missing=0
if ((${#ci_args[@]})) && [[ -f $cache ]] && ! grep -qx 'CHAT_WERROR:BOOL=ON' "$cache"; then
  werror_missing=1
fi
if [[ -f $cache && -z ${CMAKE_ARGS:-} ]] && ((!werror_missing)); then
  if ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "$cache"; then
    say "$build_dir was configured with another generator; remove it or set BUILD_DIR"
    exit 1
  fi
  say "configure: $build_dir already configured (set CMAKE_ARGS to reconfigure)"
else
  say "configure: $build_dir (Release, Ninja${ci_args[*]:+, ${ci_args[*]}}${CMAKE_ARGS:+, $CMAKE_ARGS})"
  mkdir -p "$build_dir"
  log=$build_dir/setup-configure.log
  if ! "${configure[@]}" >"$log" 2>&1; then
    cat "$log"
    say "configure failed (log: $log)"
    exit 1
  fi
fi

# The Node.js package's dependencies (koffi; @grpc/grpc-js and proto-loader
# for its tests and the benchmark) from its committed package-lock.json, when
# node_modules is missing or older than the lock file (about 5 s).
node_pkg=bindings/node
if ! command -v npm >/dev/null; then
  say "npm: not found; the node tests will report themselves skipped"
elif [[ ! -d $node_pkg/node_modules || $node_pkg/package-lock.json -nt $node_pkg/node_modules ]]; then
  say "npm ci: $node_pkg"
  (cd "$node_pkg" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$node_pkg/node_modules"
else
  say "npm: $node_pkg/node_modules up to date"
fi

say "build: $build_dir"
# cmake --build re-runs the configure step by itself when a CMakeLists changed.
cmake --build "$build_dir"
say "ready in $((SECONDS - start))s: $build_dir"
