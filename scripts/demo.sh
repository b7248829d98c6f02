#!/usr/bin/env bash
#
# scripts/demo.sh: the story pooldiag exists for, in four steps.  Run as root.
#
# It builds pooldiag into a private installation, starts a throw-away
# cluster (owned by the unprivileged user pooldiag_test, under a mktemp dir,
# listening on 127.0.0.1:54329 and a socket in that dir) with pooldiag
# preloaded, and then:
#
#   1. A pooled app in trouble.  "shop-api" has a pool of 6 connections (6
#      psql clients as role "app").  One request forgot its transaction
#      after SELECT ... FOR UPDATE; three requests wait behind its row lock;
#      two connections sit idle.  The app would now report "QueuePool limit
#      ... reached, connection timed out".
#   2. The diagnosis, from pooldiag's views: who holds connections and for
#      how long, who waits for whom, and the leak_suspect event.
#   3. pooldiag closes the culprit: an idle-in-transaction timeout is set
#      with a reload, and the close is shown as the app saw it (its FATAL
#      with SQLSTATE, DETAIL and HINT), as the server log has it, and as
#      pooldiag.events records it; the waiting requests then finish.
#   4. A deploy drains the pool: pooldiag.drain() closes every shop-api
#      connection once idle, each with reason "drain".
#
# Output fits a 100-column terminal.  Everything it started is stopped and
# the temp dir removed at the end, also on error or Ctrl-C.  The system's
# own clusters are never touched.
#
# Each client is a psql reading from a fifo this script writes to: a
# connection stays open and idle for as long as we write nothing, and
# closing the fifo ends psql cleanly.  Markers (\! touch FILE) tell us when
# a client has run its part.
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
# A leak suspect within the demo's few seconds, not after 60 s.
pooldiag.leak_threshold = '2s'
pooldiag.naptime = '200ms'
pooldiag.flush_interval = '200ms'
lc_messages = 'C'
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
admin_psql -c 'CREATE EXTENSION pooldiag' -c 'CREATE ROLE app LOGIN' \
	-c 'CREATE TABLE orders (id int PRIMARY KEY, status text)' \
	-c "INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 100) g" \
	-c 'GRANT SELECT, UPDATE ON orders TO app'
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

# step TITLE LINE...: a heading and a one-line explanation.
step() {
	echo
	echo "=== $1 ==="
	shift
	printf '%s\n' "$@"
	echo
}

step "1. A pooled app in trouble" \
	"shop-api's pool has 6 connections.  One request took a row lock and forgot its transaction;" \
	"three requests wait behind it, and the app starts to time out waiting for a free connection."
for n in 1 2 3 4 5 6; do start_client shop-api "$n"; done
# The culprit: a handler that returns its connection inside a transaction.
send shop-api 1 "BEGIN;" "SELECT status FROM orders WHERE id = 1 FOR UPDATE;"
mark shop-api 1 ready
wait_marks ready 1
# Three requests that need the same row.
for n in 2 3 4; do
	send shop-api "$n" "UPDATE orders SET status = 'paid' WHERE id = 1;"
	mark shop-api "$n" done
done
# Two connections that served a request each and went back to the pool.
for n in 5 6; do
	send shop-api "$n" "SELECT count(*) FROM orders;" "SELECT now();"
	mark shop-api "$n" ready
done
wait_marks ready 3
sleep 3
echo "app log: sqlalchemy.exc.TimeoutError: QueuePool limit of size 5 overflow 1 reached,"
echo "         connection timed out, timeout 30.00"

step "2. The diagnosis, from pooldiag's views" \
	"Who holds the connections, for how long, and who waits for whom (pg_blocking_pids)?"
admin_psql <<'EOF'
SELECT s.pid, s.state, s.checkouts AS co,
       round(extract(epoch FROM clock_timestamp() - s.checkout_start)::numeric, 1) AS held_s,
       round(extract(epoch FROM s.idle_for)::numeric, 1) AS idle_s,
       a.wait_event_type AS waits_on,
       nullif(array_to_string(pg_blocking_pids(s.pid), ','), '') AS blocked_by
  FROM pooldiag.sessions s JOIN pg_stat_activity a USING (pid)
 WHERE s.application_name = 'shop-api'
 ORDER BY s.checkout_start NULLS LAST, s.pid;
EOF
echo
echo "pooldiag.events: leak suspects (checkouts held past leak_threshold = 2s)"
admin_psql <<'EOF'
SELECT pid, event,
       round((detail->>'hold_time_ms')::numeric / 1000, 1) AS held_s,
       detail->>'leak_threshold_ms' AS threshold_ms
  FROM pooldiag.events
 WHERE event = 'leak_suspect' AND application_name = 'shop-api'
 ORDER BY event_time LIMIT 4;
EOF

step "3. pooldiag closes the culprit" \
	"An idle-in-transaction timeout of 3s, set with a reload, reaches the idle culprit at once."
culprit="$(admin_psql -At -c "SELECT pid FROM pooldiag.sessions WHERE application_name = 'shop-api' AND state = 'idle in transaction'")"
[ -n "$culprit" ] || pd_die "no shop-api session is idle in a transaction"
admin_psql -c "ALTER SYSTEM SET pooldiag.idle_in_transaction_timeout = '3s'" -c 'SELECT pg_reload_conf()' >/dev/null
for ((i = 0; i < 100; i++)); do
	[ "$(admin_psql -At -c "SELECT count(*) FROM pg_stat_activity WHERE pid = $culprit")" = 0 ] && break
	sleep 0.1
done
wait_marks done 3
# The app uses the connection again: this is what its driver reports.
send shop-api 1 '\set VERBOSITY verbose' "SELECT 1;"
sleep 1
echo "what the app saw when it used the culprit's connection again:"
grep -E '(FATAL|DETAIL|HINT):' "$workdir/client.shop-api.1.log" | sed -E 's/^psql:[^ ]* //' |
	head -n 3 | fold -w 98 -s
echo
echo "the server log:"
grep -E 'pooldiag closed the session' -A1 "$workdir/server.log" |
	sed -E 's/^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] //' | fold -w 98 -s | head -n 4
echo
echo "pooldiag.events:"
sleep 1
admin_psql <<EOF
SELECT pid, event, reason,
       round((detail->>'idle_ms')::numeric / 1000, 1) AS idle_s
  FROM pooldiag.events
 WHERE event IN ('terminate', 'disconnect') AND pid = $culprit
 ORDER BY event_time;
EOF
echo
echo "the three waiting requests finished; shop-api's sessions now:"
admin_psql -c "SELECT state, count(*) FROM pooldiag.sessions WHERE application_name = 'shop-api' GROUP BY 1"

step "4. A deploy drains the pool" \
	"pooldiag.drain() closes every shop-api connection the next time it is idle, with reason drain."
admin_psql -c "SELECT pooldiag.drain(NULL, 'app', 'shop-api') AS marked"
for ((i = 0; i < 50; i++)); do
	[ "$(admin_psql -At -c "SELECT count(*) FROM pooldiag.sessions WHERE application_name = 'shop-api'")" = 0 ] && break
	sleep 0.1
done
sleep 1
echo "why did connections go away?  pooldiag.events answers:"
admin_psql <<'EOF'
SELECT event, coalesce(reason, '') AS reason, count(*)
  FROM pooldiag.events
 WHERE application_name = 'shop-api' AND event IN ('terminate', 'disconnect', 'leak_suspect')
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT terminations, leak_suspects, events_written, events_dropped FROM pooldiag.health;
EOF
echo
pd_log "demo finished; cleaning up"
