#!/usr/bin/env bash
# Build a PostgreSQL container image from Debian's packages, for machines that reach Debian's
# package archive but no container registry. The image honours the same POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_DB and PGDATA variables as the official `postgres` image, so the
# harness treats both alike.
#
# Usage: scripts/build-postgres-image.sh [MAJOR] [IMAGE:TAG]
#   MAJOR      15 (Debian bookworm, the default) or 17 (Debian trixie)
#   IMAGE:TAG  defaults to rlsgate/postgres:MAJOR
# Environment: RLSGATE_DEBIAN_MIRROR (default http://deb.debian.org/debian).
# Needs root, debootstrap and a running Docker daemon. Takes about a minute.
set -euo pipefail

major=${1:-15}
image=${2:-rlsgate/postgres:$major}
mirror=${RLSGATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

case "$major" in
  15) suite=bookworm ;;
  17) suite=trixie ;;
  *) echo "build-postgres-image: unsupported major '$major'; use 15 or 17" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "build-postgres-image: debootstrap needs root; run with sudo" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "build-postgres-image: debootstrap is missing; run 'apt-get install -y debootstrap'" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "build-postgres-image: docker is not reachable; start dockerd" >&2; exit 2; }

work=$(mktemp -d /tmp/rlsgate-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs

echo "build-postgres-image: debootstrap $suite with postgresql-$major into $root" >&2
debootstrap --variant=minbase --include="postgresql-$major,ca-certificates" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  echo "build-postgres-image: debootstrap failed; is $mirror reachable?" >&2
  exit 1
}

# The packaged cluster is not used: the entrypoint initialises PGDATA itself.
rm -rf "$root/var/lib/postgresql/$major/main" "$root/etc/postgresql/$major/main"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*

install -m 0755 /dev/stdin "$root/usr/local/bin/docker-entrypoint.sh" <<ENTRY
#!/bin/sh
# Minimal stand-in for the official image's entrypoint: initialise PGDATA on first start from
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, then run the server as the postgres user.
set -eu
bindir=/usr/lib/postgresql/$major/bin
export PGDATA=\${PGDATA:-/var/lib/postgresql/data}
user=\${POSTGRES_USER:-postgres}
db=\${POSTGRES_DB:-\$user}
if [ "\${1:-postgres}" = postgres ]; then
  [ \$# -gt 0 ] && shift
  mkdir -p "\$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "\$PGDATA" /var/run/postgresql
  chmod 700 "\$PGDATA"
  if [ ! -s "\$PGDATA/PG_VERSION" ]; then
    if [ -z "\${POSTGRES_PASSWORD:-}" ]; then
      echo "error: POSTGRES_PASSWORD is not set" >&2
      exit 1
    fi
    pwfile=\$(mktemp)
    printf '%s\n' "\$POSTGRES_PASSWORD" > "\$pwfile"
    chown postgres "\$pwfile"
    setpriv --reuid=postgres --regid=postgres --init-groups \
      "\$bindir/initdb" -D "\$PGDATA" -U "\$user" --pwfile="\$pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "\$pwfile"
    echo "host all all all scram-sha-256" >> "\$PGDATA/pg_hba.conf"
    if [ "\$db" != postgres ]; then
      setpriv --reuid=postgres --regid=postgres --init-groups \
        "\$bindir/postgres" --single -D "\$PGDATA" postgres <<SQL >/dev/null
CREATE DATABASE "\$db";
SQL
    fi
  fi
  exec setpriv --reuid=postgres --regid=postgres --init-groups \
    "\$bindir/postgres" -D "\$PGDATA" -c listen_addresses='*' "\$@"
fi
exec "\$@"
ENTRY

echo "build-postgres-image: importing as $image" >&2
tar -C "$root" -c . | docker import \
  --change "ENTRYPOINT [\"/usr/local/bin/docker-entrypoint.sh\"]" \
  --change 'CMD ["postgres"]' \
  --change "ENV PATH=/usr/lib/postgresql/$major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change 'ENV PGDATA=/var/lib/postgresql/data' \
  --change 'EXPOSE 5432' \
  --change 'LABEL org.opencontainers.image.source=rlsgate-debian' \
  - "$image" >/dev/null
echo "build-postgres-image: built $image" >&2
