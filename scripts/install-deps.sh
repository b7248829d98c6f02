#!/usr/bin/env bash
#
# scripts/install-deps.sh: install what building and testing pooldiag needs,
# from Debian's own archive, for the PostgreSQL major version in
# POOLDIAG_PG_MAJOR (default 15: Debian 12's).  Idempotent: when everything
# is already installed it touches nothing and does not even run apt-get update.
# scripts/chroot.sh runs this same script inside the Debian 13 and sid chroots
# it builds for PostgreSQL 17 and 18, so this is the one list of packages.
#
# Packages and why (NN is the major version):
#   build-essential           make, gcc (and gcc's libasan/libubsan, which
#                             scripts/test.sh --sanitize loads)
#   postgresql-NN             the server (postgres, initdb, pg_ctl, pgbench)
#   postgresql-server-dev-NN  headers, PGXS, the server's pg_config; pulls in
#                             clang/llvm for the JIT bitcode PGXS builds
#   postgresql-client-NN      psql, pg_regress' helpers and the TAP modules
#                             PostgreSQL::Test::Cluster / ::Utils under pgxs
#   libkrb5-dev               Debian's pg_config.h sets ENABLE_GSS, so any file
#                             including libpq-be.h needs the GSSAPI headers,
#                             which server-dev does not pull in
#   libipc-run-perl           IPC::Run, required by PostgreSQL::Test::Utils
#   perl                      prove (the TAP harness) and Test::More
#   gdb                       t/062 injects a fault into a backend with it
# and the real connection pools that t/100-t/104 (the README's "Recipes for
# connection pools") drive against a scratch cluster:
#   python3-sqlalchemy, python3-psycopg2     SQLAlchemy's QueuePool (t/100)
#   python3-psycopg-pool                     psycopg 3 and psycopg_pool (t/101)
#   libhikaricp-java, libpostgresql-jdbc-java, default-jdk-headless
#                             HikariCP with pgjdbc (t/103); libhikaricp-java
#                             depends on libslf4j-java, whose slf4j-simple
#                             binding prints HikariCP's log; libpgjava is
#                             only a virtual name that
#                             libpostgresql-jdbc-java provides
#   pgbouncer                 the test starts its own, in transaction mode, on
#                             a port and socket of its own (t/104); Debian's
#                             own pgbouncer service is not started (below)
#   nodejs, npm               only when node or npm is missing: node-postgres
#                             itself (npm `pg`) is installed by t/102 at test
#                             time into its own directory, as the test user
#   prometheus                promtool: t/086 validates pooldiag.metrics() with
#                             `promtool check metrics`
#   prometheus-postgres-exporter
#                             t/087 runs it with
#                             contrib/prometheus-postgres-exporter/pooldiag.yaml
# Installing these and pgbouncer must not start Debian's daemons
# (prometheus on :9090, the exporter on :9187, pgbouncer on :6432): they are
# installed with a policy-rc.d that refuses every start, unless the machine
# has its own policy-rc.d already.
# postgresql-contrib is not needed: it is only a metapackage, the contrib
# modules and pgbench ship in postgresql-NN itself.
#
# Options:
#   --chroot-tools   also install debootstrap, which scripts/chroot.sh and
#                    scripts/test-package.sh need to build their chroots, and
#                    iproute2 (ip), with which test-package.sh gives its
#                    servers a network namespace of their own
#   --no-pg          install no PostgreSQL packages (with --chroot-tools: a
#                    machine that tests only in chroots)
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

with_pg=1 chroot_tools=0
while [ $# -gt 0 ]; do
	case "$1" in
	--chroot-tools) chroot_tools=1 ;;
	--no-pg) with_pg=0 ;;
	*) pd_die "install-deps.sh: unknown argument: $1" ;;
	esac
	shift
done

PACKAGES=()
if [ "$with_pg" -eq 1 ]; then
	PACKAGES+=(
		build-essential
		"postgresql-$PD_PG_MAJOR"
		"postgresql-server-dev-$PD_PG_MAJOR"
		"postgresql-client-$PD_PG_MAJOR"
		libkrb5-dev
		libipc-run-perl
		perl
		gdb
		python3-sqlalchemy
		python3-psycopg2
		python3-psycopg-pool
		libhikaricp-java
		libpostgresql-jdbc-java
		default-jdk-headless
		pgbouncer
		prometheus
		prometheus-postgres-exporter
	)
	# A machine may have Node.js from elsewhere (it then has npm too);
	# Debian's own packages only when a command is missing.
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		PACKAGES+=(nodejs npm)
	fi
fi
if [ "$chroot_tools" -eq 1 ]; then
	PACKAGES+=(debootstrap iproute2)
fi

# Print the packages of PACKAGES that are not fully installed.
missing_packages() {
	local p status
	for p in "${PACKAGES[@]}"; do
		status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
		[ "$status" = installed ] || printf '%s\n' "$p"
	done
}

mapfile -t missing < <(missing_packages)

if [ "${#missing[@]}" -gt 0 ]; then
	pd_require_root
	export DEBIAN_FRONTEND=noninteractive
	# Wait for a concurrent apt/dpkg (unattended-upgrades on a fresh machine)
	# instead of failing on its lock.
	apt_opts=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
	pd_log "installing: ${missing[*]}"
	# The package lists of a fresh machine are empty or stale; update only
	# when we actually have something to install.
	apt-get "${apt_opts[@]}" update
	# The tools the tests run themselves, never as services (see above), go
	# in an apt-get of their own; the rest installs as Debian means it to.
	services=() others=()
	for p in "${missing[@]}"; do
		case "$p" in
		prometheus | prometheus-postgres-exporter | pgbouncer) services+=("$p") ;;
		*) others+=("$p") ;;
		esac
	done
	if [ "${#others[@]}" -gt 0 ]; then
		apt-get "${apt_opts[@]}" install -y --no-install-recommends "${others[@]}"
	fi
	if [ "${#services[@]}" -gt 0 ]; then
		own_policy=0
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod 755 /usr/sbin/policy-rc.d
			own_policy=1
		fi
		rc=0
		apt-get "${apt_opts[@]}" install -y --no-install-recommends "${services[@]}" || rc=$?
		[ "$own_policy" -eq 0 ] || rm -f /usr/sbin/policy-rc.d
		[ "$rc" -eq 0 ] || exit "$rc"
	fi
else
	pd_log "all packages already installed: ${PACKAGES[*]}"
fi

# Installing postgresql-NN makes Debian create the cluster "NN main" and
# start it on port 5432.  It is left exactly as it is: the tests and the demo
# run private clusters on their own ports and sockets, and never stop, start
# or reconfigure a cluster they did not create.

if [ "$with_pg" -eq 0 ]; then
	command -v debootstrap >/dev/null || pd_die "debootstrap missing"
	[ "$chroot_tools" -eq 0 ] || command -v ip >/dev/null || pd_die "ip missing (iproute2)"
	exit 0
fi

# Check the toolchain we just promised, so that a broken install fails here
# with a clear message rather than deep inside make.
pd_require_pg
[ "$("$PG_CONFIG" --version | awk '{ print $2 }' | cut -d. -f1)" = "$PD_PG_MAJOR" ] ||
	pd_die "$PG_CONFIG is not PostgreSQL $PD_PG_MAJOR: $("$PG_CONFIG" --version)"
[ -f "$("$PG_CONFIG" --pgxs)" ] || pd_die "PGXS makefile missing: $("$PG_CONFIG" --pgxs)"
[ -f "$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/perl/PostgreSQL/Test/Cluster.pm" ] ||
	pd_die "PostgreSQL::Test::Cluster missing (postgresql-client-$PD_PG_MAJOR)"
command -v prove >/dev/null || pd_die "prove not found (perl)"
perl -MIPC::Run -e 1 2>/dev/null || pd_die "perl module IPC::Run missing (libipc-run-perl)"
[ -f /usr/include/gssapi/gssapi.h ] || pd_die "GSSAPI headers missing (libkrb5-dev)"
command -v gcc >/dev/null || pd_die "gcc missing (build-essential)"
command -v make >/dev/null || pd_die "make missing (build-essential)"
command -v promtool >/dev/null || pd_die "promtool missing (prometheus)"
command -v prometheus-postgres-exporter >/dev/null ||
	pd_die "prometheus-postgres-exporter missing"
pd_log "dependencies OK: $("$PG_CONFIG" --version)"
