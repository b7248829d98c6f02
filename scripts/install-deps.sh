#!/usr/bin/env bash
#
# scripts/install-deps.sh: install what building and testing pooldiag needs on
# Debian 12, from Debian's own archive.  Idempotent: when everything is
# already installed it touches nothing and does not even run apt-get update.
#
# Packages and why:
#   build-essential           make, gcc
#   postgresql-15             the server (postgres, initdb, pg_ctl, pgbench)
#   postgresql-server-dev-15  headers, PGXS, the server's pg_config; pulls in
#                             clang-14/llvm-14 for the JIT bitcode PGXS builds
#   postgresql-client-15      psql, pg_regress' helpers and the TAP modules
#                             PostgreSQL::Test::Cluster / ::Utils under pgxs
#   libkrb5-dev               Debian's pg_config.h sets ENABLE_GSS, so any file
#                             including libpq-be.h needs the GSSAPI headers,
#                             which server-dev does not pull in
#   libipc-run-perl           IPC::Run, required by PostgreSQL::Test::Utils
#   perl                      prove (the TAP harness) and Test::More
# postgresql-contrib is not needed: in bookworm it is only a metapackage, the
# contrib modules and pgbench ship in postgresql-15 itself.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(
	build-essential
	"postgresql-$PD_PG_MAJOR"
	"postgresql-server-dev-$PD_PG_MAJOR"
	"postgresql-client-$PD_PG_MAJOR"
	libkrb5-dev
	libipc-run-perl
	perl
)

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
	apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"
else
	pd_log "all packages already installed: ${PACKAGES[*]}"
fi

# Installing postgresql-15 makes Debian create the cluster "15 main" on port
# 5432 and start it.  We never use it (tests and demo run private clusters),
# so stop it and keep it from starting at boot, where it would take memory and
# port 5432.  Done on every run, not only after an install, so that the state
# is right whoever installed the server.
if [ -f "/etc/postgresql/$PD_PG_MAJOR/main/start.conf" ]; then
	if [ "$(id -u)" -eq 0 ]; then
		if pg_lsclusters -h 2>/dev/null | awk -v v="$PD_PG_MAJOR" '$1 == v && $2 == "main" && $4 ~ /^online/ { found = 1 } END { exit !found }'; then
			pd_log "stopping the default cluster $PD_PG_MAJOR/main"
			pg_ctlcluster "$PD_PG_MAJOR" main stop || pd_warn "could not stop cluster $PD_PG_MAJOR/main"
		fi
		start_conf="/etc/postgresql/$PD_PG_MAJOR/main/start.conf"
		if [ "$(grep -Ev '^[[:space:]]*(#|$)' "$start_conf" | tr -d '[:space:]')" != manual ]; then
			pd_log "setting $start_conf to manual"
			# Keep the file's comments; replace only the setting line.
			sed -i -E 's/^[[:space:]]*(auto|manual|disabled)[[:space:]]*$/manual/' "$start_conf"
			grep -qx manual "$start_conf" || echo manual >>"$start_conf"
		fi
	else
		pd_warn "not root: leaving cluster $PD_PG_MAJOR/main as it is"
	fi
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
pd_log "dependencies OK: $("$PG_CONFIG" --version)"
