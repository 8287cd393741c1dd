# Shared by the benchmarks' setup scripts (sourced, not run): create or reuse a venv, and
# snapshot the working tree for pip.  Needs OUT (results dir, with venvs/ and logs/), REPO and PY.

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# make_venv NAME CHECK_PY PIP_ARGS...: create OUT/venvs/NAME unless it exists and CHECK_PY runs
make_venv() {
  local name=$1 check=$2; shift 2
  local v="$OUT/venvs/$name"
  if [ -x "$v/bin/python" ] && "$v/bin/python" -c "$check" >/dev/null 2>&1; then
    log "$name: reusing $v"
    return 0
  fi
  log "$name: creating $v (pip install $*)"
  rm -rf "$v"
  "$PY" -m venv "$v"
  "$v/bin/pip" install -q --upgrade pip >>"$OUT/logs/pip-$name.log" 2>&1
  "$v/bin/pip" install "$@" >>"$OUT/logs/pip-$name.log" 2>&1 \
    || { log "$name: pip failed, see $OUT/logs/pip-$name.log"; tail -n 20 "$OUT/logs/pip-$name.log" >&2; exit 1; }
  "$v/bin/python" -c "$check" || { log "$name: installed but the import check failed"; exit 1; }
}

# hookserve: snapshot of the working tree (no .git, no build output, no bench results)
snapshot_repo() {
  local dst="$OUT/src/hookserve"
  rm -rf "$dst"; mkdir -p "$dst"
  tar -C "$REPO" --exclude=.git --exclude=.tox --exclude=build --exclude=dist --exclude='*.egg-info' \
      --exclude=__pycache__ --exclude=.pytest_cache --exclude=.ruff_cache --exclude=./bench -cf - . \
    | tar -C "$dst" -xf -
  echo "$dst"
}

# reinstall_hookserve NAME SRC PINS...: hookserve + hookserve-ts from the snapshot SRC into
# OUT/venvs/NAME, first whatever the tree's pyproject now requires (a reused venv may lack a
# new dependency; PINS keep torch where it is), then the tree's code over the installed copy
reinstall_hookserve() {
  local name=$1 src=$2; shift 2
  local pip="$OUT/venvs/$name/bin/pip"
  log "$name: re-installing hookserve + hookserve-ts from the working tree ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'), uncommitted changes included)"
  { "$pip" install -q "$src" "$src/contrib/hookserve-ts" "$@" \
    && "$pip" install -q --no-deps --force-reinstall "$src" "$src/contrib/hookserve-ts"; } \
    >>"$OUT/logs/pip-$name.log" 2>&1 || { tail -n 20 "$OUT/logs/pip-$name.log" >&2; exit 1; }
}
