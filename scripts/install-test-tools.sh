#!/usr/bin/env bash
# What `cargo test` needs beyond Rust, on Debian or Ubuntu, installed when missing (as root, or
# through sudo): PostgreSQL server binaries for the local backend, pgTAP (the extension of the
# local server's major) and pg_prove for the emitted-suite test, and a headless chromium for the
# access-matrix test. Docker and the container image are .ci/run's business (or your own).
set -euo pipefail

log() { echo "install-test-tools: $*" >&2; }
sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { $sudo apt-get update -qq; apt_updated=1; }
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  log "installing PostgreSQL server binaries"
  apt_install postgresql
fi
pg_major=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
[ -f "/usr/share/postgresql/$pg_major/extension/pgtap.control" ] || { log "installing pgTAP"; apt_install "postgresql-$pg_major-pgtap"; }
command -v pg_prove >/dev/null 2>&1 || { log "installing pg_prove"; apt_install libtap-parser-sourcehandler-pgtap-perl; }
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1 \
  || { log "installing chromium"; apt_install --no-install-recommends chromium; }
log "ready: PostgreSQL $pg_major server binaries, pgTAP, pg_prove, a headless browser"
