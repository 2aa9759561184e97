# Sourced by setup.sh and test.sh. Run through sudo, they create build
# trees (and node_modules) as root, which the user could then neither
# rebuild nor delete without root: give what they made back to the user who
# ran sudo (SUDO_UID / SUDO_GID). A no-op otherwise, and safe to repeat.
#
#   give_back PATH...   missing paths are skipped
give_back() {
  ((EUID == 0)) || return 0
  [[ ${SUDO_UID:-} =~ ^[0-9]+$ && $SUDO_UID != 0 ]] || return 0
  local gid=${SUDO_GID:-$SUDO_UID} path
  for path in "$@"; do
    # -h: change symlinks themselves, never what they point to.
    [[ -e $path || -L $path ]] && chown -R -h "$SUDO_UID:$gid" -- "$path"
  done
  return 0
}

# CI=true (any value but empty, false or 0): warnings are errors.
ci_cmake_args() {
  if [[ -n ${CI:-} && $CI != false && $CI != 0 ]]; then
    printf '%s\n' -DCHAT_WERROR=ON
  fi
}
