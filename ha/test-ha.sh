#!/usr/bin/env bash
# make test-ha: credport through a failover of its PostgreSQL primary (see ha/main.go).
# Needs Linux, root (apt-get, runuser) and Debian's postgresql-15, postgresql-15-auto-failover
# and pgbouncer, installed here when missing. Skipped when they cannot be had, except under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
	if [ "${CI:-}" = "true" ]; then
		echo "test-ha: $1 (failing: CI=true)" >&2
		exit 1
	fi
	echo "test-ha: SKIPPED: $1" >&2
	exit 0
}

[ "$(uname -s)" = Linux ] || skip "needs Linux"
[ "$(id -u)" = 0 ] || skip "needs root, for apt-get and to run PostgreSQL as the postgres user"
command -v runuser > /dev/null || skip "runuser not found"

if ! command -v pg_autoctl > /dev/null || ! command -v pgbouncer > /dev/null || [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
	echo "test-ha: installing postgresql-15-auto-failover and pgbouncer" >&2
	install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15 postgresql-15-auto-failover pgbouncer > /dev/null; }
	if ! { command -v apt-get > /dev/null && { install || { apt-get update -q > /dev/null && install; }; }; }; then
		skip "cannot install postgresql-15-auto-failover and pgbouncer with apt-get"
	fi
fi
id postgres > /dev/null 2>&1 || skip "no postgres OS user"

go build -o bin/credport ./cmd/credport
go build -o bin/credport-ha ./ha
exec timeout --signal=TERM --kill-after=20 280 bin/credport-ha --credport bin/credport "$@"
