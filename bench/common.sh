# shellcheck shell=bash
# Helpers shared by bench/run.sh and bench/curves.sh (sourced): packages,
# builds, and reading deliverbench's RESULT lines.  The caller sets
# bench_prog (its name, for messages) and here (the bench directory).

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { printf '%s: %s\n' "${bench_prog:-bench}" "$*" >&2; exit 1; }

# bench_install_packages: the Debian packages the benchmarks need, with
# apt-get when one is missing.
bench_install_packages() {
    local pkgs=(build-essential libpq-dev postgresql-15 postgresql-server-dev-15
                postgresql-15-pgq3 gnuplot-nox clang-14 llvm-14-dev)
    local missing=() p st
    for p in "${pkgs[@]}"; do
        st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [[ $st == "install ok installed" ]] || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return
    local sudo=()
    [[ $EUID -eq 0 ]] || sudo=(sudo)
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq >/dev/null
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        fail "apt-get install ${missing[*]} failed"
}

# bench_build WITH_DELIVER HINT: build bench/deliverbench and, when
# WITH_DELIVER is 1, build and install the extension (HINT: what to run
# instead when it does not build).
bench_build() {
    local with_deliver=$1 hint=$2 repo
    repo=$(dirname "$here")
    log "building bench/deliverbench"
    make -s -C "$here" >/dev/null || fail "bench/deliverbench does not build"
    [[ $with_deliver == 1 ]] || return 0
    log "building and installing the deliver extension"
    local out sudo=()
    [[ $EUID -eq 0 ]] || sudo=(sudo)
    if ! out=$(cd "$repo" && make -s 2>&1 && "${sudo[@]}" make -s install 2>&1); then
        printf '%s\n' "$out" | tail -n 30 >&2
        fail "the deliver extension does not build or install (above).
  $hint"
    fi
}

# Field of a RESULT line.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# Lost count, with the messages still queued when the drain ran out of time.
lost_cell() {
    local u
    u=$(field "$1" undrained)
    if [[ -n $u && $u != 0 ]]; then echo "$(field "$1" lost) (+$u undrained)"; else field "$1" lost; fi
}

# ratio A B: A / B as "1.23x", or "-".
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2fx", a / b }'
}
