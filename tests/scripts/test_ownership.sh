#!/usr/bin/env bash
# scripts/ownership.sh under a simulated sudo (SUDO_UID / SUDO_GID set, as
# sudo sets them): give_back hands a tree to that user, twice over without
# harm, leaves symlink targets alone, and does nothing when not under sudo.
# ci_cmake_args asks for -Werror exactly when CI is set. Changing a file's
# owner needs root: without it the test reports itself skipped (77).
set -euo pipefail
repo=$1
# shellcheck source=../../scripts/ownership.sh
source "$repo/scripts/ownership.sh"

fail() { echo "FAILED: $*"; exit 1; }
owners() { find "$1" -exec stat -c '%u:%g' {} + | sort -u | tr '\n' ' '; }

[[ $(CI=true ci_cmake_args) == -DCHAT_WERROR=ON ]] || fail "CI=true gives no -Werror"
[[ $(CI=1 ci_cmake_args) == -DCHAT_WERROR=ON ]] || fail "CI=1 gives no -Werror"
for v in "" false 0; do
  [[ -z $(CI=$v ci_cmake_args) ]] || fail "CI='$v' asks for -Werror"
done
[[ -z $(unset CI; ci_cmake_args) ]] || fail "no CI asks for -Werror"
echo "ok: -DCHAT_WERROR=ON exactly when CI is set"

if ((EUID != 0)); then
  echo "skipped: give_back needs root (to change owners)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/build/sub" "$tmp/elsewhere"
touch "$tmp/build/sub/file" "$tmp/elsewhere/target"
ln -s "$tmp/elsewhere/target" "$tmp/build/link"
chown -R 0:0 "$tmp"

(unset SUDO_UID SUDO_GID; give_back "$tmp/build")
[[ $(owners "$tmp") == "0:0 " ]] || fail "changed owners without sudo: $(owners "$tmp")"
(SUDO_UID=0 SUDO_GID=0; give_back "$tmp/build")
[[ $(owners "$tmp") == "0:0 " ]] || fail "changed owners for sudo by root"
echo "ok: nothing changes unless sudo ran it for another user"

for run in 1 2; do
  (SUDO_UID=65534 SUDO_GID=65533; give_back "$tmp/build" "$tmp/missing")
  [[ $(owners "$tmp/build") == "65534:65533 " ]] ||
    fail "run $run: build tree owned by $(owners "$tmp/build")"
done
[[ $(owners "$tmp/elsewhere") == "0:0 " ]] || fail "followed a symlink out of the tree"
echo "ok: the tree goes to SUDO_UID:SUDO_GID, twice over; symlink targets stay"

(unset SUDO_GID; SUDO_UID=65532; give_back "$tmp/build")
[[ $(owners "$tmp/build") == "65532:65532 " ]] || fail "no SUDO_GID: $(owners "$tmp/build")"
echo "ok: without SUDO_GID the group is the uid's number"
echo PASSED
