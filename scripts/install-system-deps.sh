#!/usr/bin/env bash
# Install the OS packages the test suite needs, when they are missing.
#
# Idempotent and quiet: when everything is present it prints nothing, runs no
# apt-get, and exits 0. It installs only as root on a machine with apt-get (CI:
# a fresh Debian machine, as root); otherwise it names what is missing on
# stderr and exits 0, and the tests that need it skip (or fail, under
# SUYUAN_REQUIRE_POSTGRES=1 / SUYUAN_REQUIRE_GO=1).
#
# To add a dependency: write a check_NAME function that calls
# `want PACKAGE...` (alternatives, first available wins) when its programs are
# missing, and add it to CHECKS below.
#
# Environment:
#   SUYUAN_SYSDEPS_DRY_RUN=1   say what would be installed, install nothing.
set -euo pipefail

# Each entry is a list of alternative Debian package names ("a|b"): the first
# one apt knows is installed.
MISSING_PACKAGES=()
want() {
    local IFS='|'
    MISSING_PACKAGES+=("$*")
}

# --- PostgreSQL 15 server binaries (tests/pgcluster.py) ---------------------
PG_BIN_DIRS=(/usr/lib/postgresql/15/bin)
have_postgres() {
    local d
    if [[ -n "${SUYUAN_PG_BIN:-}" && -x "${SUYUAN_PG_BIN}/initdb" ]]; then return 0; fi
    for d in "${PG_BIN_DIRS[@]}"; do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && return 0
    done
    command -v initdb >/dev/null 2>&1
}
check_postgres() {
    have_postgres || want postgresql-15 postgresql
}
# Debian's postgresql packages create and start a "main" cluster on port 5432
# when installed. The tests never use it, so stop postgresql-common from making
# one: install it first, then switch create_main_cluster off.
before_install_postgres() {
    apt_install postgresql-common
    local conf=/etc/postgresql-common/createcluster.conf
    if [[ -f "$conf" ]]; then
        sed -ri 's/^#?\s*create_main_cluster\s*=.*/create_main_cluster = false/' "$conf"
    fi
}

# --- zbar, the QR decoder the label tests read codes back with (pyzbar) -----
# pyzbar loads the shared library only (no zbarimg needed); PDFs are rendered
# with pypdfium2 from PyPI, so poppler-utils is not needed.
have_zbar() {
    ldconfig -p 2>/dev/null | grep -q 'libzbar\.so\.0' && return 0
    compgen -G '/usr/lib/*/libzbar.so.0' >/dev/null || compgen -G '/usr/lib/libzbar.so.0' >/dev/null
}
check_zbar() {
    have_zbar || want libzbar0
}

# --- chromium for the browser tests (Playwright drives it; never `playwright install`)
check_chromium() {
    [[ -x /usr/bin/chromium ]] || want chromium
}

# --- a CJK font, so pages and screenshots show Chinese rather than boxes -------
check_cjk_font() {
    fc-list :lang=zh 2>/dev/null | grep -q . || want fonts-wqy-zenhei fonts-noto-cjk
}

# --- Go and golang.org/x/mod (tests/interop: a log made by sumdb/tlog + sumdb/note)
# Built offline in GOPATH mode from Debian's sources (GO111MODULE=off
# GOPATH=/usr/share/gocode); never `go get`.
GO_X_MOD=/usr/share/gocode/src/golang.org/x/mod/sumdb
check_go() {
    command -v go >/dev/null 2>&1 || want golang-go
    [[ -f "$GO_X_MOD/tlog/tlog.go" && -f "$GO_X_MOD/note/note.go" ]] || want golang-golang-x-mod-dev
}

# --- wrk, the load generator `make bench` drives the site with (not the tests) -
check_wrk() {
    [[ "${SUYUAN_SYSDEPS_BENCH:-}" != 1 ]] || command -v wrk >/dev/null 2>&1 || want wrk
}

CHECKS=(check_postgres check_zbar check_chromium check_cjk_font check_go check_wrk)

# ---------------------------------------------------------------------------
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" \
        >/dev/null
}

# First of the alternatives "a|b|c" that apt can install.
resolve_package() {
    local alt alts
    IFS='|' read -ra alts <<<"$1"
    for alt in "${alts[@]}"; do
        if apt-cache show "$alt" >/dev/null 2>&1; then
            echo "$alt"
            return 0
        fi
    done
    echo "install-system-deps: no package available for: $1" >&2
    return 1
}

main() {
    local check
    for check in "${CHECKS[@]}"; do "$check"; done
    ((${#MISSING_PACKAGES[@]} == 0)) && return 0

    if [[ "${SUYUAN_SYSDEPS_DRY_RUN:-}" == 1 ]]; then
        echo "install-system-deps: would install: ${MISSING_PACKAGES[*]}"
        return 0
    fi
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "install-system-deps: missing (install them yourself; needs root and apt-get):" \
            "${MISSING_PACKAGES[*]}" >&2
        return 0
    fi

    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    local entry pkg pkgs=()
    for entry in "${MISSING_PACKAGES[@]}"; do
        pkg=$(resolve_package "$entry") || exit 1
        pkgs+=("$pkg")
    done
    echo "install-system-deps: installing ${pkgs[*]}" >&2
    if [[ " ${pkgs[*]} " == *" postgresql"* ]]; then
        before_install_postgres
    fi
    apt_install "${pkgs[@]}"
}

main "$@"
