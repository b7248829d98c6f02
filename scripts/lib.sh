# shellcheck shell=bash
#
# scripts/lib.sh: shell helpers shared by test.sh, demo.sh and the bench
# scripts.  Source it; it defines variables and functions and runs nothing.
#
#   . "$(dirname "$0")/lib.sh"
#
# Everything here targets Debian with PostgreSQL from Debian's own archive:
# 15 on Debian 12 (bookworm), the machine the scripts run on, and 17 and 18 in
# the Debian 13 (trixie) and sid chroots that scripts/chroot.sh builds.

# The PostgreSQL major version to build and test against: POOLDIAG_PG_MAJOR,
# default 15.  Package names and paths all follow from it; scripts/test.sh
# selects it with its --pg option.
#
# The extension is built against the server's own pg_config.  /usr/bin/pg_config
# is a wrapper (from libpq-dev / postgresql-common) that picks the newest
# server-dev it finds, or libpq's pg_config when none is installed; it is not
# pinned to a version, so never rely on PATH.  POOLDIAG_PG_CONFIG overrides
# this on purpose; an inherited PG_CONFIG does not, because a stray one from a
# developer's shell silently builds against the wrong server.
#
# pd_set_pg_major N: select version N (sets PD_PG_MAJOR, PG_CONFIG and
# PD_PG_BINDIR, and exports POOLDIAG_PG_MAJOR for the scripts we run).
pd_set_pg_major() {
	case "$1" in
	15 | 16 | 17 | 18) ;;
	*)
		printf 'ERROR: unsupported PostgreSQL major version: %s (15, 16, 17 or 18)\n' "$1" >&2
		exit 1
		;;
	esac
	PD_PG_MAJOR="$1"
	export POOLDIAG_PG_MAJOR="$1"
	PG_CONFIG="${POOLDIAG_PG_CONFIG:-/usr/lib/postgresql/${PD_PG_MAJOR}/bin/pg_config}"
	PD_PG_BINDIR="$(dirname "$PG_CONFIG")"
}
pd_set_pg_major "${POOLDIAG_PG_MAJOR:-15}"

# Compiler options of every build: warnings are bugs here.  scripts/test.sh
# --sanitize adds the sanitizers, and make variables in PD_MAKE_ARGS.
PD_COPT="-Werror"
PD_MAKE_ARGS=()

# pd_pg_suite MAJOR: the Debian suite whose own archive ships PostgreSQL
# MAJOR, or nothing when none does (16 is in no Debian suite).
pd_pg_suite() {
	case "$1" in
	15) echo bookworm ;;
	17) echo trixie ;;
	18) echo sid ;;
	esac
}

# pd_host_pg_major: the PostgreSQL major version this machine's own Debian
# release ships, or nothing when it is not one of the suites above.  sid
# names itself after the next release in os-release; its PostgreSQL is 18.
pd_host_pg_major() {
	local codename=""
	if [ -r /etc/os-release ]; then
		codename="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
	fi
	case "$codename" in
	bookworm) echo 15 ;;
	trixie) echo 17 ;;
	forky | sid) echo 18 ;;
	esac
}

# The unprivileged account that runs initdb, postgres and the tests:
# PostgreSQL refuses to run as root.
PD_TEST_USER="${POOLDIAG_TEST_USER:-pooldiag_test}"

# The repository root, whichever script sourced us.
PD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The bin directory of the installation pooldiag was installed into: the
# private copy made by pd_build_install(), or the system's before that.
pd_bindir() { printf '%s\n' "${PD_BINDIR:-$PD_PG_BINDIR}"; }

pd_log() { printf '==> %s\n' "$*" >&2; }
pd_warn() { printf 'WARNING: %s\n' "$*" >&2; }
pd_die() {
	printf 'ERROR: %s\n' "$*" >&2
	exit 1
}

pd_require_root() {
	[ "$(id -u)" -eq 0 ] ||
		pd_die "$(basename "$0") must run as root (try: sudo $0): it installs packages and the extension, and runs the tests as user $PD_TEST_USER"
}

# Fail early, with the fix in the message, when the server toolchain is absent
# (for example after --skip-deps on a fresh machine).
pd_require_pg() {
	[ -x "$PG_CONFIG" ] ||
		pd_die "$PG_CONFIG not found: run scripts/install-deps.sh (postgresql-server-dev-$PD_PG_MAJOR)"
	local b
	for b in postgres initdb pg_ctl psql; do
		[ -x "$PD_PG_BINDIR/$b" ] ||
			pd_die "PostgreSQL $PD_PG_MAJOR's $b not in $PD_PG_BINDIR: run scripts/install-deps.sh"
	done
}

# Create the test account once.  A system account without a usable home or
# login shell: it only ever runs commands through runuser.
pd_ensure_test_user() {
	if ! id -u "$PD_TEST_USER" >/dev/null 2>&1; then
		pd_log "creating system user $PD_TEST_USER"
		useradd --system --user-group --no-create-home \
			--home-dir /nonexistent --shell /usr/sbin/nologin \
			--comment 'pooldiag tests' "$PD_TEST_USER"
	fi
}

# pd_as_test_user CMD...: run CMD as the test user with a clean, explicit
# environment.  pd_test_user_argv CMD... only stores that command line in the
# array PD_ARGV, for callers that start it in the background and need the pid
# of runuser itself (runuser passes SIGTERM on to its child).  env -i drops the caller's PG* variables (PGHOST, PGPORT,
# PGDATABASE...) and locale settings, which would otherwise leak into initdb,
# pg_regress and the TAP tests and make results depend on who ran them.
# C.UTF-8 always exists on Debian; a missing locale such as en_US.UTF-8
# would make initdb fail.  HOME points into the build dir (set PD_HOME)
# because the account has none and perl/psql look there.
pd_test_user_argv() {
	PD_ARGV=(runuser -u "$PD_TEST_USER" -- env -i
		"PATH=$(pd_bindir):/usr/local/bin:/usr/bin:/bin"
		"HOME=${PD_HOME:-/tmp}"
		"USER=$PD_TEST_USER"
		"LOGNAME=$PD_TEST_USER"
		"LANG=C.UTF-8"
		"TMPDIR=/tmp")
	local v
	# Knobs a developer may set on purpose are passed through.
	# Port reservations in one directory for every run on this machine, so
	# that concurrent runs never pick the same port.
	PD_ARGV+=("PG_TEST_PORT_DIR=${PG_TEST_PORT_DIR:-/tmp/pooldiag-test-ports}")
	for v in PG_TEST_TIMEOUT_DEFAULT PG_TEST_NOCLEAN PG_TEST_EXTRA PROVE_FLAGS CI TERM \
		NODE_EXTRA_CA_CERTS; do
		if [ -n "${!v:-}" ]; then PD_ARGV+=("$v=${!v}"); fi
	done
	PD_ARGV+=("$@")
}
pd_as_test_user() {
	pd_test_user_argv "$@"
	"${PD_ARGV[@]}"
}

# pd_make_workdir PREFIX: print a fresh directory under /tmp owned by the test
# user.  mktemp makes it 0700, which is what we want for the owner.
pd_make_workdir() {
	local dir
	dir="$(mktemp -d "${POOLDIAG_WORKDIR_PARENT:-/tmp}/${1}.XXXXXX")"
	chown "$PD_TEST_USER:$PD_TEST_USER" "$dir"
	printf '%s\n' "$dir"
}

# pd_copy_tree DEST: copy the source tree (not .git, not build products) into
# DEST and give it to the test user.  The tests write results/, tmp_check/ and
# regression.* next to the Makefile, and the test user cannot (and must not)
# write to the caller's checkout, so they run in a copy.  Build products of a
# developer's own `make` in the checkout are excluded so that the copy is
# built from scratch with our flags.
pd_copy_tree() {
	local dest="$1"
	tar -C "$PD_ROOT" -cf - \
		--exclude=./.git \
		--exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		--exclude=./tmp_check --exclude=./results --exclude=./log \
		--exclude=./regression.diffs --exclude=./regression.out \
		. | tar -C "$dest" -xf -
	chown -R "$PD_TEST_USER:$PD_TEST_USER" "$dest"
}

# pd_build_install DIR: compile DIR as the test user with COPT=$PD_COPT
# (-Werror: warnings are bugs here), then install the result into a private copy of the
# PostgreSQL installation under DIR/pginst, never into the system's
# directories.  PostgreSQL finds its lib and share directories relative to
# its own executable, so a copy of Debian's bin/lib/share trees is a complete
# installation of its own; PD_BINDIR then names its bin directory, and
# `make installcheck bindir=$PD_BINDIR` tests against it.  This keeps two test
# runs on one machine (or a run and a system server) from ever replacing each
# other's pooldiag.so.  -j2: the machines have two cores.
pd_build_install() {
	local dir="$1" inst="$1/pginst" libdir sharedir
	libdir="$(dirname "$PD_PG_BINDIR")"
	sharedir="$("$PG_CONFIG" --sharedir)"
	pd_log "building pooldiag in $dir against PostgreSQL $PD_PG_MAJOR (COPT=$PD_COPT)"
	PD_HOME="$dir" pd_as_test_user make -C "$dir" -j2 PG_CONFIG="$PG_CONFIG" COPT="$PD_COPT" \
		${PD_MAKE_ARGS[@]+"${PD_MAKE_ARGS[@]}"} || return 1
	mkdir -p "$inst$libdir" "$inst$sharedir"
	cp -a "$libdir/." "$inst$libdir/"
	cp -a "$sharedir/." "$inst$sharedir/"
	chown -R "$PD_TEST_USER:$PD_TEST_USER" "$inst"
	PD_BINDIR="$inst$PD_PG_BINDIR"
	pd_log "installing pooldiag into the private installation $inst"
	PD_HOME="$dir" pd_as_test_user make -C "$dir" PG_CONFIG="$PG_CONFIG" COPT="$PD_COPT" \
		${PD_MAKE_ARGS[@]+"${PD_MAKE_ARGS[@]}"} DESTDIR="$inst" install || return 1
}

# pd_stop_clusters DIR: immediately stop every postmaster whose data directory
# lies under DIR.  The tests and the demo start their own servers; when a run
# is interrupted (timeout, Ctrl-C, die()), those servers would outlive it,
# because pg_ctl detaches them from our process group.  Only servers found
# under DIR are touched, identified by their own postmaster.pid.
pd_stop_clusters() {
	local dir="$1" pidfile datadir
	[ -d "$dir" ] || return 0
	while IFS= read -r pidfile; do
		datadir="$(dirname "$pidfile")"
		pd_log "stopping leftover server in $datadir"
		PD_HOME="$dir" pd_as_test_user "$(pd_bindir)/pg_ctl" stop -D "$datadir" -m immediate -w -t 30 >/dev/null 2>&1 || true
	done < <(find "$dir" -name postmaster.pid -type f 2>/dev/null)
}

# pd_port_in_use PORT: true when something listens on 127.0.0.1:PORT.
# Uses bash's /dev/tcp, so it needs neither ss nor netstat.
pd_port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# --- scratch clusters (demo, benchmarks) -------------------------------------
# pd_cluster_create DATADIR PORT: initdb a cluster owned by the test user with
# superuser "postgres", listening on 127.0.0.1:PORT and on a socket in
# DATADIR's parent directory, with pooldiag preloaded.  Append more settings
# to DATADIR/postgresql.conf before starting it.  trust authentication is
# fine for such a cluster: it listens on loopback and in a 0700 directory
# only, and lives as long as the script that made it.
pd_cluster_create() {
	local datadir="$1" port="$2" sockdir
	sockdir="$(dirname "$datadir")"
	PD_HOME="$sockdir" pd_as_test_user "$(pd_bindir)/initdb" -D "$datadir" -U postgres -A trust \
		--no-sync >"$sockdir/initdb.log" 2>&1 || {
		cat "$sockdir/initdb.log" >&2
		pd_die "initdb failed"
	}
	cat >>"$datadir/postgresql.conf" <<EOF

# --- scripts/lib.sh: scratch cluster ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sockdir'
shared_preload_libraries = 'pooldiag'
EOF
}

# pd_cluster_start DATADIR LOGFILE: start it and wait until it accepts
# connections; on failure show the end of LOGFILE.
pd_cluster_start() {
	PD_HOME="$(dirname "$1")" pd_as_test_user "$(pd_bindir)/pg_ctl" start -D "$1" -l "$2" -w -t 60 >/dev/null || {
		tail -n 30 "$2" >&2
		pd_die "the server in $1 did not start"
	}
}

# pd_cluster_stop DATADIR: fast shutdown, immediate if that fails.
pd_cluster_stop() {
	PD_HOME="$(dirname "$1")" pd_as_test_user "$(pd_bindir)/pg_ctl" stop -D "$1" -m fast -w -t 30 >/dev/null 2>&1 ||
		PD_HOME="$(dirname "$1")" pd_as_test_user "$(pd_bindir)/pg_ctl" stop -D "$1" -m immediate -w -t 30 >/dev/null 2>&1 ||
		true
}
