#!/usr/bin/env bash
#
# scripts/demo.sh: watch pooldiag see a few pooled applications.  Run as root.
#
# It builds and installs pooldiag, starts a throw-away cluster (owned by the
# unprivileged user pooldiag_test, under a mktemp dir, listening on
# 127.0.0.1:54329 and a socket in that dir) with pooldiag preloaded, creates
# the extension in database postgres, and drives this workload, each client
# a psql process connected as role "app" with its own application_name:
#
#   orders-api      4 connections, each 5 short autocommit statements, then idle
#   billing-worker  3 connections, each 3 BEGIN; SELECT; SELECT; COMMIT; blocks,
#                   then idle
#   reports         1 connection inside a long SELECT pg_sleep(5) checkout
#   leaky-app       1 connection left idle in transaction (BEGIN; SELECT 1;)
#
# It then prints pooldiag.sessions with the checkout count each session
# should show (an autocommit statement is one checkout, a BEGIN..COMMIT
# block is one, an open one counts too), pooldiag.health and the last rows
# of pooldiag.events when those exist, and finally stops everything it
# started and removes the temp dir, also on error or Ctrl-C.
#
# Each client is a psql reading from a fifo this script writes to: a
# connection stays open and idle (outside any transaction, or inside one for
# leaky-app) for as long as we write nothing, and closing the fifo ends psql
# cleanly.  Markers (\! touch FILE) tell us when a client has run its part.
#
# Options:
#   --skip-deps   do not run install-deps.sh
#   --port N      TCP port of the demo cluster (default 54329, or
#                 $POOLDIAG_DEMO_PORT); the demo stops if it is taken
#   --keep        keep the temp dir (data dir, server and client logs)
#   -h, --help    this text
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/{/^#/{s/^# \{0,1\}//;p}}' "$0"; }

skip_deps=0 keep=0
port="${POOLDIAG_DEMO_PORT:-54329}"
while [ $# -gt 0 ]; do
	case "$1" in
	--skip-deps) skip_deps=1 ;;
	--port)
		[ $# -ge 2 ] || pd_die "--port needs a number"
		port="$2"
		shift
		;;
	--port=*) port="${1#--port=}" ;;
	--keep) keep=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		pd_die "unknown argument: $1"
		;;
	esac
	shift
done
if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1024 ] || [ "$port" -gt 65535 ]; then
	pd_die "invalid port: $port (1024-65535)"
fi

pd_require_root

workdir=""
server_started=0
client_pids=() # runuser processes of the psql clients
client_fds=()  # our write ends of their fifos

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	local rc=$?
	set +e
	trap - INT TERM
	if [ "${#client_fds[@]}" -gt 0 ] || [ "${#client_pids[@]}" -gt 0 ]; then
		pd_log "stopping the demo clients"
	fi
	# EOF on its fifo makes an idle psql exit by itself.
	local fd pid
	for fd in "${client_fds[@]}"; do exec {fd}>&-; done
	sleep 0.5
	# Whoever is still busy (reports in pg_sleep) gets SIGTERM, which
	# runuser passes on to its psql.
	for pid in "${client_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "${client_pids[@]}"; do wait "$pid" 2>/dev/null; done
	if [ "$server_started" -eq 1 ]; then
		pd_log "stopping the demo cluster"
		pd_cluster_stop "$workdir/data"
	fi
	if [ -n "$workdir" ]; then
		# Whatever happened, no server may outlive the demo.
		pd_stop_clusters "$workdir"
		if [ "$rc" -ne 0 ] && [ -s "$workdir/server.log" ]; then
			echo "----- last 40 lines of the server log -----"
			tail -n 40 "$workdir/server.log"
		fi
		if [ "$keep" -eq 1 ]; then
			pd_log "kept $workdir"
		else
			rm -rf "$workdir"
		fi
	fi
	[ "$rc" -eq 0 ] || echo "demo FAILED (exit $rc)" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$skip_deps" -eq 0 ]; then
	bash "$PD_ROOT/scripts/install-deps.sh"
else
	pd_require_pg
fi
pd_ensure_test_user

# Check the port before the build, so that a busy port fails in seconds.
if pd_port_in_use "$port"; then
	pd_die "port $port on 127.0.0.1 is in use; pick another with --port N or POOLDIAG_DEMO_PORT=N"
fi

workdir="$(pd_make_workdir pooldiag-demo)"
export PD_HOME="$workdir"
mkdir "$workdir/build"
pd_copy_tree "$workdir/build"
pd_build_install "$workdir/build" >"$workdir/build.log" 2>&1 || {
	tail -n 60 "$workdir/build.log"
	pd_die "build failed (log above)"
}
pd_log "pooldiag built and installed"

# --- the cluster -----------------------------------------------------------
pd_log "creating a cluster in $workdir/data"
pd_cluster_create "$workdir/data" "$port"
cat >>"$workdir/data/postgresql.conf" <<'EOF'
# Show a leak suspect within the demo's few seconds, not after 60 s.
pooldiag.leak_threshold = '2s'
EOF

# The port may have been taken while we built.
if pd_port_in_use "$port"; then
	pd_die "port $port on 127.0.0.1 is in use; pick another with --port N"
fi
pd_log "starting it on 127.0.0.1:$port"
server_started=1
pd_cluster_start "$workdir/data" "$workdir/server.log"

# psql as the superuser over the socket, for setup and the reports.  Its
# application_name lets the event listing below leave its own sessions out.
admin_psql() {
	pd_as_test_user "$(pd_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -P pager=off \
		-d "host=$workdir port=$port user=postgres dbname=postgres application_name=pooldiag-demo" "$@"
}
admin_psql -c 'CREATE EXTENSION pooldiag' -c 'CREATE ROLE app LOGIN'
pd_log "CREATE EXTENSION pooldiag: done"

# --- the workload ----------------------------------------------------------
# start_client APP N: start psql number N of APP on its own fifo.
start_client() {
	local app="$1" n="$2" fifo="$workdir/fifo.$1.$2" fd
	mkfifo -m 0600 "$fifo"
	pd_test_user_argv "$(pd_bindir)/psql" -X -q -v ON_ERROR_STOP=1 \
		-d "host=127.0.0.1 port=$port dbname=postgres user=app application_name=$app"
	# The subshell opens the fifo for psql (blocking until we open our end)
	# and first closes its copies of the other clients' write ends: an open
	# write end anywhere would keep that client from ever seeing EOF.
	(
		for fd in "${client_fds[@]}"; do exec {fd}>&-; done
		exec "${PD_ARGV[@]}"
	) <"$fifo" >"$workdir/client.$app.$n.log" 2>&1 &
	client_pids+=("$!")
	exec {fd}>"$fifo"
	client_fds+=("$fd")
	eval "fd_${app//-/_}_$n=$fd"
}
# send APP N LINE...: feed lines to that client.
send() {
	local var="fd_${1//-/_}_$2"
	shift 2
	printf '%s\n' "$@" >&"${!var}"
}
# mark APP N NAME: the client touches NAME.APP.N once it has run all before.
mark() { send "$1" "$2" "\\! touch $workdir/$3.$1.$2"; }

# wait_marks NAME COUNT: wait until COUNT clients have passed mark NAME, and
# fail if a client died meanwhile (ON_ERROR_STOP, lost connection).
wait_marks() {
	local name="$1" want="$2" i have pid
	for ((i = 0; i < 300; i++)); do
		have=$(find "$workdir" -maxdepth 1 -name "$name.*" | wc -l)
		[ "$have" -ge "$want" ] && return 0
		for pid in "${client_pids[@]}"; do
			if ! kill -0 "$pid" 2>/dev/null; then
				for f in "$workdir"/client.*.log; do
					[ -s "$f" ] && { echo "----- $(basename "$f") -----"; cat "$f"; }
				done
				pd_die "a demo client exited early (its output is above)"
			fi
		done
		sleep 0.1
	done
	pd_die "timed out waiting for the clients ($have of $want reached '$name')"
}

pd_log "starting 9 client connections"
for n in 1 2 3 4; do start_client orders-api "$n"; done
for n in 1 2 3; do start_client billing-worker "$n"; done
start_client reports 1
start_client leaky-app 1

# orders-api: a pool handing out connections for one statement each.
for n in 1 2 3 4; do
	send orders-api "$n" \
		"SELECT count(*) FROM pg_class WHERE relkind = 'r';" \
		"SELECT now();" \
		"SELECT pg_sleep(0.05);" \
		"SELECT sum(i) FROM generate_series(1, 1000) AS i;" \
		"SELECT current_user, $n AS worker;"
	mark orders-api "$n" ready
done
# billing-worker: a connection checked out for a whole transaction.
for n in 1 2 3; do
	for b in 1 2 3; do
		send billing-worker "$n" "BEGIN;" \
			"SELECT count(*) FROM pg_namespace;" \
			"SELECT $b AS batch, pg_sleep(0.02);" \
			"COMMIT;"
	done
	mark billing-worker "$n" ready
done
# leaky-app: forgets to end its transaction.
send leaky-app 1 "BEGIN;" "SELECT 1;"
mark leaky-app 1 ready
wait_marks ready 8

# reports: one long checkout, still running when we look.
mark reports 1 ready
send reports 1 "SELECT pg_sleep(5);"
mark reports 1 finished
wait_marks ready 9

# Let the pools sit idle for a moment, as real ones do between requests.
sleep 2

# --- what pooldiag sees ----------------------------------------------------
echo
echo "pooldiag.sessions (expected_checkouts: what the workload above implies)"
admin_psql <<'EOF'
SELECT pid, application_name, state, checkouts,
       CASE application_name
            WHEN 'orders-api'     THEN 5  -- 5 autocommit statements
            WHEN 'billing-worker' THEN 3  -- 3 BEGIN..COMMIT blocks
            WHEN 'reports'        THEN 1  -- 1 checkout, still open
            WHEN 'leaky-app'      THEN 1  -- 1 open transaction
       END AS expected_checkouts,
       CASE application_name
            WHEN 'reports'   THEN 'active'
            WHEN 'leaky-app' THEN 'idle in transaction'
            ELSE 'idle'
       END AS expected_state,
       hold_time, idle_for, age
  FROM pooldiag.sessions
 WHERE application_name IN ('orders-api', 'billing-worker', 'reports', 'leaky-app')
 ORDER BY application_name, pid;

-- One line for the reader: do the counts match?
SELECT CASE WHEN count(*) FILTER (WHERE NOT ok) = 0 AND count(*) = 9
            THEN 'checkout counts: all ' || count(*) || ' demo sessions match the expected counts'
            ELSE 'checkout counts: MISMATCH in ' || count(*) FILTER (WHERE NOT ok)
                 || ' of ' || count(*) || ' demo sessions (9 expected)'
       END AS verdict
  FROM (SELECT checkouts IS NOT DISTINCT FROM
               CASE application_name WHEN 'orders-api' THEN 5 WHEN 'billing-worker' THEN 3
                                     ELSE 1 END AS ok
          FROM pooldiag.sessions
         WHERE application_name IN ('orders-api', 'billing-worker', 'reports', 'leaky-app')) AS s
\gset
\echo :verdict
EOF

# health and events landed later than sessions; show them when present.
if [ "$(admin_psql -At -c "SELECT to_regclass('pooldiag.health') IS NOT NULL")" = t ]; then
	echo
	echo "pooldiag.health"
	admin_psql -x -c 'SELECT * FROM pooldiag.health'
fi

if [ "$(admin_psql -At -c "SELECT to_regclass('pooldiag.events') IS NOT NULL")" = t ]; then
	# Wait for the reports checkout to end and the worker to flush it
	# (pooldiag.flush_interval, 1 s by default).
	wait_marks finished 1
	sleep 2
	echo
	echo "pooldiag.events of the demo clients (last 20)"
	# Order by the first time-like column the table has, newest first.
	order_col="$(admin_psql -At -c "
		SELECT quote_ident(column_name) FROM information_schema.columns
		 WHERE table_schema = 'pooldiag' AND table_name = 'events'
		   AND data_type LIKE 'timestamp%' ORDER BY ordinal_position LIMIT 1")"
	ours="application_name IS DISTINCT FROM 'pooldiag-demo'"
	if [ -n "$order_col" ]; then
		admin_psql -c "SELECT * FROM (SELECT * FROM pooldiag.events WHERE $ours ORDER BY $order_col DESC LIMIT 20) AS e ORDER BY $order_col"
	else
		admin_psql -c "SELECT * FROM pooldiag.events WHERE $ours ORDER BY ctid DESC LIMIT 20"
	fi
fi

echo
pd_log "demo finished; cleaning up"
