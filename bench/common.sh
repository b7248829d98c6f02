# shellcheck shell=bash
#
# bench/common.sh: helpers shared by the bench/ scripts.  Source it; it
# defines variables and functions and runs nothing by itself.
#
# Every benchmark runs its own scratch cluster:
#   * as the OS user "postgres" (PostgreSQL refuses to run as root), through
#     runuser with a clean environment;
#   * in a fresh mktemp directory owned by that user (data dir, unix socket,
#     pgbench scripts, logs), removed on exit;
#   * listening on 127.0.0.1 only, on a free port in 56000-56999; clients
#     connect through the unix socket in that directory unless BENCH_HOST
#     says otherwise (BENCH_HOST=127.0.0.1 for TCP loopback);
#   * stopped on exit (trap EXIT/INT/TERM), with every background process the
#     script started killed by pid, and a watchdog that ends the script after
#     BENCH_MAX_SECONDS.
#
# Benchmarks build pooldiag from this checkout and install it into a
# private copy of the PostgreSQL installation in their scratch directory;
# nothing is installed into the system's directories.

set -euo pipefail

BENCH_PG_BINDIR="${BENCH_PG_BINDIR:-/usr/lib/postgresql/15/bin}"
BENCH_PG_CONFIG="$BENCH_PG_BINDIR/pg_config"
BENCH_OS_USER="${BENCH_OS_USER:-postgres}"
BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

BENCH_DIR=""          # scratch directory (data, socket, logs)
BENCH_PGDATA=""
BENCH_PORT=""
BENCH_HOST="${BENCH_HOST:-}"
BENCH_BG_PIDS=()      # background processes we started, killed on exit
BENCH_WATCHDOG_PID=""

blog() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
bdie() {
	printf 'ERROR: %s\n' "$*" >&2
	exit 1
}

# exec_as_pg CMD...: replace the current (sub)shell with CMD run as the
# benchmark's OS user, in a clean environment that points libpq at the
# scratch cluster.  PGUSER_OVERRIDE / PGDATABASE_OVERRIDE pick another role
# or database.  as_pg runs it in a subshell; as_pg_bg in the background, so
# that $! is runuser's own pid.
exec_as_pg() {
	exec runuser -u "$BENCH_OS_USER" -- env -i \
		PATH="$BENCH_PG_BINDIR:/usr/local/bin:/usr/bin:/bin" \
		HOME="$BENCH_DIR" LANG=C.UTF-8 TMPDIR="$BENCH_DIR" \
		PGHOST="${BENCH_HOST:-$BENCH_DIR}" PGPORT="${PGPORT_OVERRIDE:-$BENCH_PORT}" \
		PGUSER="${PGUSER_OVERRIDE:-postgres}" PGDATABASE="${PGDATABASE_OVERRIDE:-postgres}" \
		PGCONNECT_TIMEOUT=10 \
		"$@"
}

as_pg() {
	(cd "$BENCH_DIR" && exec_as_pg "$@")
}

# as_pg_bg CMD...: as_pg in the background; the pid (runuser's, which passes
# SIGTERM on to its child) is appended to BENCH_BG_PIDS and left in
# BENCH_LAST_PID.  Callers redirect output with { as_pg_bg ...; } >file.
as_pg_bg() {
	(cd "$BENCH_DIR" && exec_as_pg "$@") &
	BENCH_LAST_PID=$!
	BENCH_BG_PIDS+=("$BENCH_LAST_PID")
}

# psql as the superuser: unaligned, tuples only, stop at the first error.
# Bounded by a timeout (BENCH_PSQL_TIMEOUT seconds, default 120).
bpsql() {
	as_pg timeout -k 5 "${BENCH_PSQL_TIMEOUT:-120}" \
		psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

# Print the server log's WARNING/ERROR/FATAL/PANIC lines, grouped, to
# stderr: the evidence for anything odd.  FATALs of sessions pooldiag or the
# benchmark closed on purpose are counted but not listed.
bench_log_summary() {
	local log="$BENCH_DIR/server.log"
	[ -n "$BENCH_DIR" ] && [ -f "$log" ] || return 0
	local n
	n="$(grep -cE '(WARNING|ERROR|FATAL|PANIC):' "$log" || true)"
	echo "server log: $n WARNING/ERROR/FATAL/PANIC lines" >&2
	[ "$n" -gt 0 ] || return 0
	grep -E '(WARNING|ERROR|FATAL|PANIC):' "$log" |
		sed -E 's/^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] //; s/[0-9]+/N/g' |
		sort | uniq -c | sort -rn | head -n 15 | sed 's/^/    /' >&2
}

bench_cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	local p
	for p in "${BENCH_BG_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	sleep 0.2
	for p in "${BENCH_BG_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
	done
	# Every server whose data directory lies in our scratch dir.
	local pidfile datadir
	if [ -n "$BENCH_DIR" ] && [ -d "$BENCH_DIR" ]; then
		while IFS= read -r pidfile; do
			datadir="$(dirname "$pidfile")"
			blog "stopping scratch server $datadir"
			as_pg pg_ctl stop -D "$datadir" -m fast -w -t 60 >/dev/null 2>&1 ||
				as_pg pg_ctl stop -D "$datadir" -m immediate -w -t 30 >/dev/null 2>&1
		done < <(find "$BENCH_DIR" -maxdepth 2 -name postmaster.pid -type f 2>/dev/null)
	fi
	bench_log_summary
	if [ -n "${BENCH_KEEP_LOG:-}" ] && [ -n "$BENCH_DIR" ] && [ -f "$BENCH_DIR/server.log" ]; then
		cp "$BENCH_DIR/server.log" "$BENCH_KEEP_LOG" 2>/dev/null &&
			blog "server log kept in $BENCH_KEEP_LOG"
	fi
	if [ -n "$BENCH_DIR" ] && [ -d "$BENCH_DIR" ]; then
		rm -rf "$BENCH_DIR"
	fi
	if [ -n "$BENCH_WATCHDOG_PID" ]; then
		kill -TERM "$BENCH_WATCHDOG_PID" 2>/dev/null
	fi
	exit "$rc"
}

# bench_setup NAME: checks, scratch dir, port, traps, watchdog.
bench_setup() {
	local name="$1"
	[ "$(id -u)" -eq 0 ] || bdie "run as root (the servers run as user $BENCH_OS_USER via runuser)"
	id -u "$BENCH_OS_USER" >/dev/null 2>&1 || bdie "OS user $BENCH_OS_USER does not exist"
	[ -x "$BENCH_PG_BINDIR/postgres" ] || bdie "no PostgreSQL server in $BENCH_PG_BINDIR"
	[ -x "$BENCH_PG_BINDIR/pgbench" ] || bdie "no pgbench in $BENCH_PG_BINDIR"

	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	BENCH_DIR="$(mktemp -d "/tmp/pooldiag-bench-${name}.XXXXXX")"
	chown "$BENCH_OS_USER:" "$BENCH_DIR"
	chmod 0700 "$BENCH_DIR"
	BENCH_PGDATA="$BENCH_DIR/data"

	# pooldiag from this checkout, installed into a private copy of the
	# PostgreSQL installation in the scratch dir (PostgreSQL finds its lib
	# and share directories relative to its executable), never into the
	# system's directories.
	local libdir sharedir inst="$BENCH_DIR/pginst"
	libdir="$(dirname "$BENCH_PG_BINDIR")"
	sharedir="$("$BENCH_PG_CONFIG" --sharedir)"
	blog "building pooldiag from $BENCH_ROOT into $inst"
	mkdir -p "$inst$libdir" "$inst$sharedir"
	cp -a "$libdir/." "$inst$libdir/"
	cp -a "$sharedir/." "$inst$sharedir/"
	make -C "$BENCH_ROOT" PG_CONFIG="$BENCH_PG_CONFIG" >/dev/null
	make -C "$BENCH_ROOT" PG_CONFIG="$BENCH_PG_CONFIG" DESTDIR="$inst" install >/dev/null
	chown -R "$BENCH_OS_USER:" "$inst"
	BENCH_PG_BINDIR="$inst$BENCH_PG_BINDIR"

	# Watchdog: the whole benchmark is bounded in time.
	local main=$$
	BENCH_MAX_SECONDS="${BENCH_MAX_SECONDS:-900}"
	(
		sleep "$BENCH_MAX_SECONDS" &
		sp=$!
		trap 'kill $sp 2>/dev/null; exit 0' TERM
		wait $sp
		echo "WATCHDOG: $name exceeded ${BENCH_MAX_SECONDS}s, aborting" >&2
		kill -TERM "$main" 2>/dev/null
	) &
	BENCH_WATCHDOG_PID=$!

	BENCH_PORT="$(bench_free_port)"
	blog "scratch dir $BENCH_DIR, port $BENCH_PORT"
}

# A free TCP port on 127.0.0.1 in 56000-56999 (other than BENCH_PORT).
bench_free_port() {
	local p tries=0
	while :; do
		p=$((56000 + RANDOM % 1000))
		if [ "$p" != "$BENCH_PORT" ] &&
			! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
			[ ! -e "/tmp/.s.PGSQL.$p" ]; then
			echo "$p"
			return 0
		fi
		tries=$((tries + 1))
		[ "$tries" -lt 200 ] || bdie "no free port in 56000-56999"
	done
}

# bench_initdb [extra postgresql.conf lines...]
bench_initdb() {
	as_pg initdb -D "$BENCH_PGDATA" -U postgres -A trust -E UTF8 \
		--locale=C.UTF-8 >"$BENCH_DIR/initdb.log" 2>&1 ||
		{ cat "$BENCH_DIR/initdb.log" >&2; bdie "initdb failed"; }
	{
		echo "# bench/common.sh"
		echo "listen_addresses = '127.0.0.1'"
		echo "port = $BENCH_PORT"
		echo "unix_socket_directories = '$BENCH_DIR'"
		echo "logging_collector = off"
		echo "log_line_prefix = '%m [%p] %q%a '"
		local line
		for line in "$@"; do
			echo "$line"
		done
	} >>"$BENCH_PGDATA/postgresql.conf"
}

# bench_start [postgres -c options as one string]
bench_start() {
	local opts="${1:-}"
	as_pg pg_ctl start -D "$BENCH_PGDATA" -l "$BENCH_DIR/server.log" -w -t 120 \
		${opts:+-o "$opts"} >/dev/null ||
		{ tail -n 30 "$BENCH_DIR/server.log" >&2; bdie "server did not start"; }
}

bench_stop() {
	as_pg pg_ctl stop -D "$BENCH_PGDATA" -m fast -w -t 120 >/dev/null ||
		bdie "server did not stop"
}

# bench_wait_worker: wait until pooldiag's worker reports "running".
bench_wait_worker() {
	local i state=""
	for i in $(seq 1 100); do
		state="$(bpsql -c "SELECT worker_state FROM pooldiag.health" 2>/dev/null || true)"
		[ "$state" = running ] && return 0
		sleep 0.1
	done
	blog "pooldiag worker state after 10 s: '${state:-?}'"
	return 1
}

# bench_kill_bg PID: stop a background process we started.
bench_kill_bg() {
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# The pgbench "tps = N (...)" figure from an output file.
pgbench_tps() {
	sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$1" | head -n 1
}

# median of numbers on stdin
median() {
	sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "nan"; exit} if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'
}

# ratio A B -> A/B with 4 decimals
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "nan"; else printf "%.4f\n", a/b }'
}

# verdict VALUE OP TARGET -> PASS/FAIL
verdict() {
	awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN {
		if (v == "nan" || v == "") { print "n/a"; exit }
		ok = (op == ">=") ? (v+0 >= t+0) : (v+0 <= t+0)
		print ok ? "PASS" : "FAIL" }'
}

bench_machine() {
	local cpu mem
	cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
	mem="$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "machine: $(nproc) CPUs ($cpu), $mem RAM, $("$BENCH_PG_BINDIR/postgres" --version)"
	local so head
	so="$BENCH_DIR/pginst$("$BENCH_PG_CONFIG" --pkglibdir)/pooldiag.so"
	head="$(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo "pooldiag: $so built $(date -u -r "$so" '+%Y-%m-%d %H:%M:%S UTC'), md5 $(md5sum "$so" | cut -c1-8); checkout HEAD $head"
}

# Processes of users other than root and the benchmark user: a sign that
# something else (another developer's tests) shares the CPUs.
bench_others() {
	ps -eo user= | grep -vcE "^(root|$BENCH_OS_USER)\$" || true
}

# CPU steal since boot in ticks (column 8 of "cpu" in /proc/stat).
bench_steal_ticks() {
	awk '$1 == "cpu" {print $9}' /proc/stat
}
