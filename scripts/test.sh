#!/usr/bin/env bash
#
# scripts/test.sh: THE test command.  Run as root (sudo scripts/test.sh).
#
#   1. installs the dependencies (scripts/install-deps.sh), unless --skip-deps;
#   2. copies the tree to a fresh /tmp/pooldiag-test.XXXXXX owned by the
#      unprivileged user pooldiag_test, builds it there with COPT=-Werror and
#      installs it (root);
#   3. runs, as pooldiag_test (PostgreSQL refuses root), the pg_regress suite
#      and then the TAP suite, each through PGXS' `make installcheck`;
#   4. on failure prints regression.diffs and the tails of the server and TAP
#      logs, so that CI output shows the cause;
#   5. ends with the line "N passed, N failed" and exits 0 only if all passed.
#
# The two suites run as two make invocations (TAP_TESTS= / REGRESS= on the
# command line switch the other one off) rather than one `make installcheck`:
# make would stop at a pg_regress failure and never run the TAP tests.  It
# also lets each suite's output be counted and its logs shown on its own.
#
# Options:
#   --skip-deps        do not run install-deps.sh (faster when iterating)
#   --regress-only     run only the pg_regress tests
#   --tap [FILE...]    run only the TAP tests; with files (t/020_events.pl),
#                      only those (PROVE_TESTS).  Repeatable.
#   --keep             keep the build directory even when everything passed
#   -h, --help         this text
#
# Environment: PG_TEST_TIMEOUT_DEFAULT (default 60 s here, instead of 180, so
# that a hang fails fast), PROVE_FLAGS (e.g. -v), PG_TEST_NOCLEAN,
# POOLDIAG_TEST_PHASE_TIMEOUT (seconds one suite may take, default 1800).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/{/^#/{s/^# \{0,1\}//;p}}' "$0"; }

skip_deps=0 run_regress=1 run_tap=1 keep=0
tap_files=()
while [ $# -gt 0 ]; do
	case "$1" in
	--skip-deps) skip_deps=1 ;;
	--regress-only) run_regress=1 run_tap=0 ;;
	--tap)
		run_regress=0 run_tap=1
		# Take the following non-option arguments as test files.
		while [ $# -gt 1 ] && [ "${2#-}" = "$2" ]; do
			tap_files+=("$2")
			shift
		done
		;;
	--tap=*)
		run_regress=0 run_tap=1
		tap_files+=("${1#--tap=}")
		;;
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

pd_require_root

export PG_TEST_TIMEOUT_DEFAULT="${PG_TEST_TIMEOUT_DEFAULT:-60}"
phase_timeout="${POOLDIAG_TEST_PHASE_TIMEOUT:-1800}"

# Validate the TAP selection before spending minutes on apt and the build.
for f in "${tap_files[@]}"; do
	[ -f "$PD_ROOT/$f" ] || pd_die "no such TAP test: $f (give it relative to the repository root, e.g. t/020_events.pl)"
done

passed=0 failed=0
builddir=""
suite_pid="" # runuser of the suite running now, for on_signal()
status=1

# Always print the summary line last, stop any server a test left running,
# and remove the build dir unless something failed (then it is kept for
# inspection) or --keep was given.
# shellcheck disable=SC2317 # run by the EXIT trap
finish() {
	local rc=$?
	set +e
	if [ -n "$builddir" ]; then
		pd_stop_clusters "$builddir"
		if [ "$status" -eq 0 ] && [ "$keep" -eq 0 ] && [ -z "${PG_TEST_NOCLEAN:-}" ]; then
			rm -rf "$builddir"
		else
			pd_log "build directory kept: $builddir"
		fi
	fi
	# A crash of this script itself (rc != 0 before any test ran) must not
	# look like a clean run.
	if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
	echo
	echo "$passed passed, $failed failed"
	if [ "$status" -eq 0 ] && [ "$rc" -eq 0 ]; then exit 0; fi
	exit 1
}
trap finish EXIT
# On a signal, stop the running suite, then exit through finish().
# shellcheck disable=SC2317 # run by the INT/TERM traps
on_signal() {
	if [ -n "$suite_pid" ]; then
		kill -TERM "$suite_pid" 2>/dev/null || true
		wait "$suite_pid" 2>/dev/null || true
	fi
	exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

if [ "$skip_deps" -eq 0 ]; then
	bash "$PD_ROOT/scripts/install-deps.sh"
else
	pd_require_pg
fi
pd_ensure_test_user

builddir="$(pd_make_workdir pooldiag-test)"
export PD_HOME="$builddir"
pd_log "copying $PD_ROOT to $builddir"
pd_copy_tree "$builddir"

if ! pd_build_install "$builddir"; then
	echo "BUILD FAILED (see the compiler output above)"
	failed=1
	exit 1
fi

# run_suite NAME LOG MAKEARGS...: run `make installcheck MAKEARGS` as the test
# user, showing the output live (CI) and keeping it in LOG for parsing.
# make runs in the background so that a SIGINT/SIGTERM to this script is
# handled at once (bash defers traps while a foreground command runs) and
# passed on through runuser and timeout to make, prove and pg_regress.
run_suite() {
	local name="$1" log="$2"
	shift 2
	pd_log "running the $name tests"
	local rc=0 tail_pid
	# timeout bounds a hang that PG_TEST_TIMEOUT_DEFAULT does not catch;
	# servers it leaves behind are stopped by finish().
	PD_HOME="$builddir" pd_test_user_argv \
		timeout --kill-after=30 "$phase_timeout" \
		make -C "$builddir" PG_CONFIG="$PG_CONFIG" bindir="$PD_BINDIR" "$@" installcheck
	"${PD_ARGV[@]}" >"$log" 2>&1 </dev/null &
	suite_pid=$!
	tail -n +1 -f --pid="$suite_pid" "$log" &
	tail_pid=$!
	wait "$suite_pid" || rc=$?
	suite_pid=""
	wait "$tail_pid" 2>/dev/null || true
	[ "$rc" -ne 124 ] || echo "TIMEOUT: the $name tests took longer than ${phase_timeout}s"
	return "$rc"
}

# print_tail FILE [LINES]: show the end of a log file under a header.
print_tail() {
	local f="$1" n="${2:-80}"
	[ -s "$f" ] || return 0
	echo "----- last $n lines of ${f#"$builddir"/} -----"
	tail -n "$n" "$f"
}

overall=0

# --- pg_regress ------------------------------------------------------------
if [ "$run_regress" -eq 1 ]; then
	log="$builddir/regress-output.log"
	rc=0
	run_suite regress "$log" TAP_TESTS= || rc=$?
	# PG15 pg_regress prints one line per test: "test NAME ... ok", or, in a
	# parallel group, "     NAME ... FAILED"; "failed (ignored)" counts as
	# a failure here, since nothing in this project is meant to be ignored.
	r_ok=$(grep -cE '\.\.\. ok( |$)' "$log" || true)
	r_bad=$(grep -cE '\.\.\. (FAILED|failed \(ignored\))' "$log" || true)
	if [ "$rc" -ne 0 ] && [ "$r_bad" -eq 0 ]; then
		# initdb, the server start or make itself failed: no test verdicts.
		r_bad=1
	fi
	echo "pg_regress: $r_ok passed, $r_bad failed"
	passed=$((passed + r_ok))
	failed=$((failed + r_bad))
	if [ "$rc" -ne 0 ]; then
		overall=1
		echo "===== pg_regress FAILED (exit $rc) ====="
		if [ -s "$builddir/regression.diffs" ]; then
			echo "----- regression.diffs (first 400 lines) -----"
			head -n 400 "$builddir/regression.diffs"
		fi
		# pg_regress keeps its server's log in log/ next to the Makefile;
		# initdb's log matters only when no test ran at all.
		print_tail "$builddir/log/postmaster.log" 60
		if ! grep -qE '\.\.\. (ok|FAILED)' "$log"; then
			print_tail "$builddir/log/initdb.log" 40
		fi
	fi
fi

# --- TAP -------------------------------------------------------------------
if [ "$run_tap" -eq 1 ]; then
	shopt -s nullglob
	all_tap=("$builddir"/t/*.pl)
	shopt -u nullglob
	if [ "${#tap_files[@]}" -eq 0 ] && [ "${#all_tap[@]}" -eq 0 ]; then
		echo "TAP: no t/*.pl files, nothing to run"
	else
		log="$builddir/tap-output.log"
		rc=0
		run_suite TAP "$log" REGRESS= ${tap_files[@]+"PROVE_TESTS=${tap_files[*]}"} || rc=$?
		# prove closes with "Files=F, Tests=N, ..." and, on failure, a
		# "Test Summary Report" with one "t/x.pl (Wstat: W Tests: N Failed: K)"
		# line per failed file.  Count subtests; a file that failed without a
		# failed subtest (died, bad plan) counts as one failure.
		t_total=$(sed -nE 's/^Files=[0-9]+, Tests=([0-9]+),.*/\1/p' "$log" | tail -n 1)
		t_total=${t_total:-0}
		t_fail_sub=$(sed -nE 's/^t\/[^ ]+ +\(Wstat: .* Tests: [0-9]+ Failed: ([0-9]+)\).*/\1/p' "$log" | awk '{ s += $1 } END { print s + 0 }')
		t_fail_files=$(grep -cE '^t/[^ ]+ +\(Wstat: .* Tests: [0-9]+ Failed: 0\)' "$log" || true)
		t_ok=$((t_total - t_fail_sub))
		t_bad=$((t_fail_sub + t_fail_files))
		if [ "$rc" -ne 0 ] && [ "$t_bad" -eq 0 ]; then t_bad=1; fi
		echo "TAP: $t_ok passed, $t_bad failed"
		passed=$((passed + t_ok))
		failed=$((failed + t_bad))
		if [ "$rc" -ne 0 ]; then
			overall=1
			echo "===== TAP tests FAILED (exit $rc) ====="
			# regress_log_NAME holds a test's own diagnostics, NAME_NODE.log
			# its servers' logs.  Show those of the failed files only, or of
			# all files when prove's report named none (killed, timed out).
			mapfile -t bad_names < <(sed -nE 's/^t\/([^ ]+)\.pl +\(Wstat: .*/\1/p' "$log")
			shopt -s nullglob
			logs=()
			if [ "${#bad_names[@]}" -gt 0 ]; then
				for n in "${bad_names[@]}"; do
					logs+=("$builddir/tmp_check/log/regress_log_$n" "$builddir/tmp_check/log/${n}"_*.log)
				done
			else
				logs=("$builddir"/tmp_check/log/*)
			fi
			shopt -u nullglob
			for f in "${logs[@]}"; do
				case "$f" in
				*/regress_log_*) print_tail "$f" 100 ;;
				*) print_tail "$f" 40 ;;
				esac
			done
		fi
	fi
fi

status=$overall
exit "$overall"
