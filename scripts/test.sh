#!/usr/bin/env bash
#
# scripts/test.sh: THE test command.  Run as root (sudo scripts/test.sh).
#
# Without options it runs the whole suite once per configuration of the
# version matrix, one after the other:
#
#   pg15            PostgreSQL 15 on this machine (Debian 12)
#   pg17            PostgreSQL 17 in a Debian 13 (trixie) chroot
#   pg18            PostgreSQL 18 in a Debian sid chroot
#   pg15 sanitize   PostgreSQL 15 again, pooldiag built with
#                   -fsanitize=address,undefined (see --sanitize)
#   pg15 package    scripts/test-package.sh: the Debian package for 15, built
#                   and installed in a clean Debian 12 chroot by the README's
#                   recipes, and a 15/main cluster there that the demo and
#                   the test command must leave running and unchanged
#   pg17 package,   the same package build for 17 (Debian 13) and 18 (sid),
#   pg18 package    and the README's install recipes for that version
#
# and ends with one "pgNN: N passed, N failed" line per configuration and a
# last, overall "N passed, N failed" line; it exits 0 only if all passed.
# The chroots are built by scripts/chroot.sh with debootstrap from the Debian
# archive (about 1.5 minutes each) and cached in /var/cache/pooldiag-chroots;
# a chroot run also checks that a cluster it did not create is left alone.
# PostgreSQL 16 is in no Debian archive, so it is not in the matrix.
#
# Each configuration:
#   1. installs the dependencies (scripts/install-deps.sh), unless --skip-deps;
#   2. copies the tree to a fresh /tmp/pooldiag-test.XXXXXX owned by the
#      unprivileged user pooldiag_test, builds it there with COPT=-Werror and
#      installs it into a private copy of the PostgreSQL installation;
#   3. runs, as pooldiag_test (PostgreSQL refuses root), the pg_regress suite
#      and then the TAP suite, each through PGXS' `make installcheck`;
#   4. with --sanitize, fails on every sanitizer report that the servers
#      wrote during the run;
#   5. on failure prints regression.diffs and the tails of the server and TAP
#      logs, so that CI output shows the cause;
#   6. ends with the line "N passed, N failed".
#
# The two suites run as two make invocations (TAP_TESTS= / REGRESS= on the
# command line switch the other one off) rather than one `make installcheck`:
# make would stop at a pg_regress failure and never run the TAP tests.  It
# also lets each suite's output be counted and its logs shown on its own.
#
# Options:
#   --pg N             run PostgreSQL N (15, 17, 18) instead of the matrix;
#                      repeatable.  A version this machine's Debian does not
#                      ship runs in its chroot (scripts/chroot.sh).
#   --sanitize         build pooldiag with -fsanitize=address,undefined (the
#                      servers load the sanitizer runtimes with it); any
#                      AddressSanitizer or UndefinedBehaviorSanitizer report
#                      is a failure.  Alone: PostgreSQL 15 only; with --pg:
#                      those versions, sanitized.
#   --skip-deps        do not run install-deps.sh (faster when iterating)
#   --regress-only     run only the pg_regress tests
#   --tap [FILE...]    run only the TAP tests; with files (t/020_events.pl),
#                      only those (PROVE_TESTS).  Repeatable.
#   --keep             keep the build directory even when everything passed
#   --no-package       leave the package runs out of the matrix
#   -h, --help         this text
#
#   scripts/test.sh --pg 15 --skip-deps      the quick run while developing
#
# Environment: PG_TEST_TIMEOUT_DEFAULT (default 60 s here, instead of 180, so
# that a hang fails fast), PROVE_FLAGS (e.g. -v), PG_TEST_NOCLEAN,
# POOLDIAG_TEST_PHASE_TIMEOUT (seconds one suite may take, default 1800),
# POOLDIAG_CHROOT_CACHE and POOLDIAG_DEBIAN_MIRROR (scripts/chroot.sh).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/{/^#/{s/^# \{0,1\}//;p}}' "$0"; }

skip_deps=0 run_regress=1 run_tap=1 keep=0 sanitize=0 single=0 package=1
tap_files=()
pg_versions=()
# The options that each configuration's own run gets, as given.
pass_args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--skip-deps) skip_deps=1 ;;
	--regress-only)
		run_regress=1 run_tap=0
		pass_args+=("$1")
		;;
	--tap)
		run_regress=0 run_tap=1
		pass_args+=("$1")
		# Take the following non-option arguments as test files.
		while [ $# -gt 1 ] && [ "${2#-}" = "$2" ]; do
			tap_files+=("$2")
			pass_args+=("$2")
			shift
		done
		;;
	--tap=*)
		run_regress=0 run_tap=1
		tap_files+=("${1#--tap=}")
		pass_args+=("$1")
		;;
	--keep)
		keep=1
		pass_args+=("$1")
		;;
	--pg)
		[ $# -ge 2 ] || pd_die "--pg needs a version (15, 17, 18)"
		pg_versions+=("$2")
		shift
		;;
	--pg=*) pg_versions+=("${1#--pg=}") ;;
	--sanitize) sanitize=1 ;;
	--no-package) package=0 ;;
	# Internal: run one configuration here (--pg, --sanitize) rather than
	# the matrix.  scripts/chroot.sh runs us this way inside a chroot.
	--single) single=1 ;;
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

for v in "${pg_versions[@]}"; do
	case "$v" in
	15 | 17 | 18) ;;
	16) [ "$v" = "$(pd_host_pg_major)" ] ||
		pd_die "PostgreSQL 16 is in no Debian archive, so there is nothing to test it with here" ;;
	*) pd_die "--pg $v: unsupported version (15, 17 or 18)" ;;
	esac
done

# Validate the TAP selection before spending minutes on apt and the build.
for f in "${tap_files[@]}"; do
	[ -f "$PD_ROOT/$f" ] || pd_die "no such TAP test: $f (give it relative to the repository root, e.g. t/020_events.pl)"
done

# --- the matrix --------------------------------------------------------------------
# run_matrix: run each configuration as a child (this script with --single,
# or scripts/chroot.sh), show its output live, and take its verdict from its
# last line "N passed, N failed".
run_matrix() {
	local host_major configs=() c v label
	host_major="$(pd_host_pg_major)"
	if [ "${#pg_versions[@]}" -eq 0 ] && [ "$sanitize" -eq 0 ]; then
		configs=(15 17 18 15:sanitize)
		# The package test builds and installs; it has no single TAP file
		# to run.
		if [ "$package" -eq 1 ] && [ "${#tap_files[@]}" -eq 0 ]; then
			configs+=(15:package 17:package 18:package)
		fi
	elif [ "${#pg_versions[@]}" -eq 0 ]; then
		configs=(15:sanitize)
	else
		for v in "${pg_versions[@]}"; do
			if [ "$sanitize" -eq 1 ]; then configs+=("$v:sanitize"); else configs+=("$v"); fi
		done
	fi

	# Dependencies once, up front: the PostgreSQL packages of the versions
	# that run here, debootstrap for those that run in chroots (whose own
	# packages scripts/chroot.sh installs).
	local native_versions=() need_chroot=0
	for c in "${configs[@]}"; do
		v="${c%%:*}"
		if [ "${c#*:}" = package ]; then
			need_chroot=1
		elif [ "$v" = "$host_major" ]; then
			[[ " ${native_versions[*]} " == *" $v "* ]] || native_versions+=("$v")
		else
			need_chroot=1
		fi
	done
	if [ "$skip_deps" -eq 0 ]; then
		for v in "${native_versions[@]}"; do
			POOLDIAG_PG_MAJOR="$v" bash "$PD_ROOT/scripts/install-deps.sh"
		done
		if [ "$need_chroot" -eq 1 ]; then
			bash "$PD_ROOT/scripts/install-deps.sh" --no-pg --chroot-tools
		fi
	fi

	local labels=() results=() rc_all=0 total_ok=0 total_bad=0
	local log cmd rc line ok bad start
	log="$(mktemp /tmp/pooldiag-matrix.XXXXXX)"
	matrix_log="$log" # for matrix_signal(), which removes it
	for c in "${configs[@]}"; do
		v="${c%%:*}"
		label="pg$v"
		cmd=()
		if [ "${c#*:}" = package ]; then
			label="$label package"
			# 15's leave-alone step runs the test command with pg_regress
			# only: the TAP suite already ran on the host (pg15), and its
			# real-pool tests need the npm registry and packages that the
			# step's network namespace cannot download.  17 and 18 have no
			# leave-alone step (the README's commands are for Debian 12):
			# their runs build the package and follow the README's install
			# recipes for that version.
			cmd=(bash "$PD_ROOT/scripts/test-package.sh" --pg "$v" --skip-deps)
			[ "$v" != 15 ] || cmd+=(--regress-only)
			[ "$keep" -eq 0 ] || cmd+=(--keep)
		else
			if [ "$v" = "$host_major" ]; then
				cmd=(bash "$PD_ROOT/scripts/test.sh" --single --pg "$v")
			else
				cmd=(bash "$PD_ROOT/scripts/chroot.sh" "$v")
			fi
			cmd+=(--skip-deps)
			if [ "$c" != "$v" ]; then
				label="$label sanitize"
				cmd+=(--sanitize)
			fi
			cmd+=(${pass_args[@]+"${pass_args[@]}"})
		fi
		echo
		echo "===== $label: ${cmd[*]#"$PD_ROOT/"} ====="
		start=$SECONDS
		rc=0
		"${cmd[@]}" >"$log" 2>&1 </dev/null &
		matrix_pid=$!
		tail -n +1 -f --pid="$matrix_pid" "$log" &
		matrix_tail=$!
		wait "$matrix_pid" || rc=$?
		matrix_pid=""
		wait "$matrix_tail" 2>/dev/null || true
		matrix_tail=""
		# scripts/test-package.sh says "package: N passed, N failed".
		line="$(grep -E '^(package: )?[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)"
		line="${line#package: }"
		ok=0 bad=0
		if [ -n "$line" ]; then
			ok="${line%% passed*}"
			bad="${line#*passed, }"
			bad="${bad%% failed}"
		fi
		# A run that died without a verdict, or failed without counting a
		# failure, is one failure.
		if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
		[ "$rc" -eq 0 ] || rc_all=1
		pd_log "$label: $ok passed, $bad failed, in $((SECONDS - start)) s"
		labels+=("$label")
		results+=("$ok passed, $bad failed")
		total_ok=$((total_ok + ok))
		total_bad=$((total_bad + bad))
	done
	rm -f "$log"
	echo
	local i
	for i in "${!labels[@]}"; do
		echo "${labels[$i]}: ${results[$i]}"
	done
	echo "$total_ok passed, $total_bad failed"
	return "$rc_all"
}

if [ "$single" -eq 0 ]; then
	matrix_pid="" matrix_tail="" matrix_log=""
	# On a signal, stop the configuration that is running; its own traps
	# stop its servers and print its summary.
	# shellcheck disable=SC2317 # run by the INT/TERM traps
	matrix_signal() {
		trap - INT TERM
		if [ -n "$matrix_pid" ]; then
			kill -TERM "$matrix_pid" 2>/dev/null || true
			wait "$matrix_pid" 2>/dev/null || true
		fi
		[ -z "$matrix_tail" ] || kill "$matrix_tail" 2>/dev/null || true
		[ -z "$matrix_log" ] || rm -f "$matrix_log"
		echo
		echo "interrupted"
		echo "0 passed, 1 failed"
		exit "$1"
	}
	trap 'matrix_signal 130' INT
	trap 'matrix_signal 143' TERM
	rc=0
	run_matrix || rc=$?
	exit "$rc"
fi

# --- one configuration, here ---------------------------------------------------------
[ "${#pg_versions[@]}" -le 1 ] || pd_die "--single runs one version"
if [ "${#pg_versions[@]}" -eq 1 ]; then pd_set_pg_major "${pg_versions[0]}"; fi

export PG_TEST_TIMEOUT_DEFAULT="${PG_TEST_TIMEOUT_DEFAULT:-60}"
phase_timeout="${POOLDIAG_TEST_PHASE_TIMEOUT:-1800}"

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

# --- --sanitize ------------------------------------------------------------------------
# pooldiag.so is built with ASan and UBSan; postgres itself is Debian's,
# uninstrumented.  Every server process runs with the ASan runtime
# preloaded (LD_PRELOAD), so that ASan replaces malloc and free from the
# start: it then checks pooldiag's own stack frames and globals, every heap
# block from malloc (GUC strings, and each palloc chunk above 8 kB, which
# gets a malloc block of its own), and UBSan every undefined operation in
# pooldiag's code.  Small palloc chunks share blocks, and shared memory is
# one mapping: overflows inside those are not seen.
#
# The preload is done by a wrapper that takes the place of bin/postgres in
# the private installation (scripts/lib.sh pd_build_install), so only the
# servers get it, whoever starts them (pg_regress, PostgreSQL::Test::Cluster,
# initdb, pg_ctl).  Two things need care:
#   - On Debian 12, postgres with libasan preloaded hangs before main():
#     the constructor of libgpg-error (which postgres links through
#     libgcrypt) calls bindtextdomain(), whose first malloc() initialises
#     ASan with glibc's _nl_state_lock held, and ASan's initialisation
#     takes that lock again.  A small preloaded library (asan-init-shim.so)
#     takes bindtextdomain's place and makes its first call malloc() before
#     glibc's, so ASan starts outside the lock.
#   - A backend cannot read UBSAN_OPTIONS when it loads libubsan (it reads
#     /proc/self/environ, which postgres overwrites with its process title),
#     so the options are compiled into the sanitized pooldiag.so as well
#     (__asan_default_options and __ubsan_default_options, in an object that
#     only this build links in).
SANITIZE_COPT="-fsanitize=address,undefined -fno-omit-frame-pointer"
sanitizer_dir=""
sanitizer_libasan=""

# sanitizer_asan_options LOGDIR: the ASan options.  detect_leaks=0: postgres
# frees per memory context and leaves the rest to process exit, by design.
# abort_on_error: a report ends the process with a crash that the postmaster
# notices (a plain exit(1) of a backend would pass for a normal end).  ASan
# writes its reports to files under LOGDIR, one per process.
# quarantine_size_mb=16 instead of 256: freed blocks stay mapped while in
# quarantine, and t/025 caps a backend's address space at 64 MB above what
# it had (so does a careful operator's ulimit).  No
# verify_asan_link_order=0: a server that loads the sanitized pooldiag.so
# without the preload fails at once instead of running half-checked.
sanitizer_asan_options() {
	printf 'detect_leaks=0:abort_on_error=1:quarantine_size_mb=16:log_path=%s/asan\n' "$1"
}

# sanitizer_options_c LOGDIR: C source of the compiled-in options.  UBSan's
# reports go to stderr, that is into the server's log (gcc's UBSan is a
# runtime of its own, and gcc 12's loses its reports when given a log_path).
sanitizer_options_c() {
	cat <<EOF
/* Generated by scripts/test.sh --sanitize; linked only into that build. */
#define PD_EXPORT __attribute__((visibility("default")))
PD_EXPORT const char *__asan_default_options(void);
PD_EXPORT const char *__ubsan_default_options(void);
const char *__asan_default_options(void)
{
	return "$(sanitizer_asan_options "$1")";
}
const char *__ubsan_default_options(void)
{
	return "print_stacktrace=1:halt_on_error=1:abort_on_error=1";
}
EOF
}

# sanitizer_build_shim DIR: DIR/asan-init-shim.so (see above).
sanitizer_build_shim() {
	cat >"$1/asan-init-shim.c" <<'EOF'
/*
 * Generated by scripts/test.sh --sanitize, preloaded after libasan into
 * the servers.  The first bindtextdomain() of a process (from a library
 * constructor, before main) allocates before glibc takes _nl_state_lock,
 * so that ASan initialises outside that lock instead of deadlocking in it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

char *bindtextdomain(const char *domain, const char *dir);

char *
bindtextdomain(const char *domain, const char *dir)
{
	static char *(*next)(const char *, const char *);

	if (next == NULL)
	{
		void *volatile p = malloc(1);	/* volatile: not optimised away */

		free(p);
		next = (char *(*)(const char *, const char *)) dlsym(RTLD_NEXT, "bindtextdomain");
	}
	return next(domain, dir);
}
EOF
	gcc -shared -fPIC -O2 -o "$1/asan-init-shim.so" "$1/asan-init-shim.c" -ldl
}

# sanitizer_preload_env LOGDIR: the environment of a sanitized process.
sanitizer_preload_env() {
	printf '%s\n' "LD_PRELOAD=$sanitizer_libasan:$sanitizer_dir/asan-init-shim.so" \
		"ASAN_OPTIONS=$(sanitizer_asan_options "$1")"
}

# sanitizer_prepare: before the build, check that this machine's toolchain
# catches and logs deliberate bugs the way the servers will, compile the
# options object and add the sanitizers to the build.
sanitizer_prepare() {
	sanitizer_dir="$builddir/sanitizer"
	mkdir -p "$sanitizer_dir/reports"
	sanitizer_libasan="$(readlink -f "$(gcc -print-file-name=libasan.so)")"
	[ -f "$sanitizer_libasan" ] || pd_die "libasan not found (gcc -print-file-name=libasan.so)"
	sanitizer_build_shim "$sanitizer_dir" || pd_die "could not build the ASan start-up shim"
	sanitizer_selftest "$sanitizer_dir/selftest"
	sanitizer_options_c "$sanitizer_dir/reports" >"$sanitizer_dir/options.c"
	gcc -c -fPIC -o "$sanitizer_dir/options.o" "$sanitizer_dir/options.c" ||
		pd_die "could not compile the sanitizer options"
	chown -R "$PD_TEST_USER:$PD_TEST_USER" "$sanitizer_dir"
	PD_COPT="$PD_COPT $SANITIZE_COPT"
	# SHLIB_LINK: what PGXS appends to pooldiag.so's link line.
	PD_MAKE_ARGS+=("SHLIB_LINK=$sanitizer_dir/options.o")
}

# sanitizer_install: after the install, check that the installed pooldiag.so
# is the sanitized one, and put the wrapper in place of the private
# installation's bin/postgres; it must start (the hang above) and answer.
sanitizer_install() {
	local so dyn syms real wrapper out
	so="$builddir/pginst$("$PG_CONFIG" --pkglibdir)/pooldiag.so"
	# Whole outputs first: grep -q in a pipe may end it early (pipefail).
	dyn="$(readelf -d "$so")"
	syms="$(readelf --dyn-syms -W "$so")"
	grep -q 'NEEDED.*libasan' <<<"$dyn" || pd_die "$so is not linked with libasan"
	grep -q ' __asan_default_options$' <<<"$syms" ||
		pd_die "$so does not carry the sanitizer options"
	wrapper="$PD_BINDIR/postgres"
	real="$PD_BINDIR/postgres.unsanitized"
	mv "$wrapper" "$real"
	{
		echo '#!/bin/bash'
		echo '# scripts/test.sh --sanitize: postgres with the ASan runtime preloaded.'
		sanitizer_preload_env "$sanitizer_dir/reports" | sed 's/^/export /; s/=\(.*\)/="\1"/'
		# argv[0] stays this path: postgres finds its installation from it.
		echo "exec -a \"\$0\" \"$real\" \"\$@\""
	} >"$wrapper"
	chmod 0755 "$wrapper"
	chown "$PD_TEST_USER:$PD_TEST_USER" "$wrapper" "$real"
	out="$(timeout 60 "$wrapper" --version 2>&1)" ||
		pd_die "postgres with libasan preloaded did not start: ${out:-timed out}"
	case "$out" in
	"postgres (PostgreSQL) $PD_PG_MAJOR."*) ;;
	*) pd_die "postgres with libasan preloaded: unexpected output: $out" ;;
	esac
	pd_log "sanitizer: pooldiag.so built with $SANITIZE_COPT; servers start with $(basename "$sanitizer_libasan") preloaded; ASan reports go to $sanitizer_dir/reports, UBSan reports to the server logs"
}

# sanitizer_selftest DIR: build a sanitized shared library with a stack
# buffer overflow, a heap buffer overflow and an undefined shift and the
# options object, dlopen() it from an uninstrumented program in the
# servers' environment (libasan and the shim preloaded), as a backend loads
# pooldiag.so, and insist that each bug is reported.  A toolchain or an
# option that silently stopped reporting would otherwise make every run
# pass.
sanitizer_selftest() {
	local dir="$1" kind n
	mkdir -p "$dir/reports"
	cat >"$dir/bug.c" <<'EOF'
#include <stdlib.h>
int pd_asan_stack(int n);
int pd_asan_heap(int n);
int pd_ubsan(int n);
int pd_asan_stack(int n) { char buf[8]; volatile char *p = buf; p[8 + n] = 1; return p[0]; }
int pd_asan_heap(int n) { volatile char *p = malloc(8); p[8 + n] = 1; return p[0]; }
int pd_ubsan(int n) { volatile int s = 40 + n; return 1 << s; }
EOF
	cat >"$dir/main.c" <<'EOF'
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv)
{
	void *h = dlopen(argv[1], RTLD_NOW);
	int (*f)(int);
	if (!h) { fprintf(stderr, "%s\n", dlerror()); return 2; }
	f = (int (*)(int)) dlsym(h, argv[2]);
	if (!f) { fprintf(stderr, "%s\n", dlerror()); return 2; }
	return f(argc - 3);
}
EOF
	sanitizer_options_c "$dir/reports" >"$dir/options.c"
	# shellcheck disable=SC2086 # SANITIZE_COPT is a list of options
	if ! gcc -c -fPIC -o "$dir/options.o" "$dir/options.c" ||
		! gcc -shared -fPIC $SANITIZE_COPT -o "$dir/bug.so" "$dir/bug.c" "$dir/options.o" ||
		! gcc -o "$dir/main" "$dir/main.c" -ldl; then
		pd_die "sanitizer self-check: could not build the test program"
	fi
	local envv
	mapfile -t envv < <(sanitizer_preload_env "$dir/reports")
	for kind in asan_stack asan_heap ubsan; do
		rm -f "$dir"/reports/*
		# A subshell, so that bash's report of the abort goes to the file too.
		(exec timeout 60 env -i "${envv[@]}" "$dir/main" "$dir/bug.so" "pd_$kind") \
			>"$dir/$kind.stderr" 2>&1 || true
		cat "$dir"/reports/* >>"$dir/$kind.stderr" 2>/dev/null || true
	done
	n=$(grep -c 'ERROR: AddressSanitizer: stack-buffer-overflow' "$dir/asan_stack.stderr" || true)
	[ "$n" -ge 1 ] || pd_die "sanitizer self-check: the deliberate stack overflow was not reported (see $dir)"
	n=$(grep -c 'ERROR: AddressSanitizer: heap-buffer-overflow' "$dir/asan_heap.stderr" || true)
	[ "$n" -ge 1 ] || pd_die "sanitizer self-check: the deliberate heap overflow was not reported (see $dir)"
	n=$(grep -c 'runtime error: shift exponent' "$dir/ubsan.stderr" || true)
	[ "$n" -ge 1 ] || pd_die "sanitizer self-check: the deliberate bad shift was not reported (see $dir)"
	pd_log "sanitizer self-check: a deliberate stack overflow, heap overflow and bad shift were all reported"
}

# sanitizer_scan: count the sanitizer reports of the run (into
# sanitizer_reports), in the report directory and (should one have gone to
# stderr instead) in the server logs, and print them.  Each report is a
# failure.
sanitizer_scan() {
	local f n=0 c pat='ERROR: (Address|Leak)Sanitizer|runtime error:'
	shopt -s nullglob
	for f in "$sanitizer_dir"/reports/*; do
		c=$(grep -cE "$pat" "$f" || true)
		[ "$c" -gt 0 ] || c=1
		n=$((n + c))
		echo "----- sanitizer report ${f#"$builddir"/} -----"
		head -n 80 "$f"
	done
	for f in "$builddir"/log/*.log "$builddir"/tmp_check/log/*.log; do
		c=$(grep -cE "$pat" "$f" || true)
		[ "$c" -gt 0 ] || continue
		n=$((n + c))
		echo "----- sanitizer report in ${f#"$builddir"/} -----"
		grep -E -A 30 "$pat" "$f" | head -n 80
	done
	shopt -u nullglob
	echo "sanitizer: $n reports"
	sanitizer_reports=$n
}

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

if [ "$sanitize" -eq 1 ]; then
	sanitizer_prepare
fi
if ! pd_build_install "$builddir"; then
	echo "BUILD FAILED (see the compiler output above)"
	failed=1
	exit 1
fi
if [ "$sanitize" -eq 1 ]; then
	sanitizer_install
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
	# pg_regress prints one line per test.  15: "test NAME ... ok", or, in
	# a parallel group, "     NAME ... FAILED"; from 16 on, TAP style:
	# "ok N - NAME  12 ms" and "not ok N - NAME  12 ms".  "failed
	# (ignored)" (15) and "not ok ... # (ignored)" (16+) count as failures
	# here, since nothing in this project is meant to be ignored.
	r_ok=$(grep -cE '\.\.\. ok( |$)|^ok [0-9]+ +- ' "$log" || true)
	r_bad=$(grep -cE '\.\.\. (FAILED|failed \(ignored\))|^not ok [0-9]+ +- ' "$log" || true)
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
		if ! grep -qE '\.\.\. (ok|FAILED)|^(not )?ok [0-9]+ +- ' "$log"; then
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

# --- sanitizer reports -------------------------------------------------------------------
if [ "$sanitize" -eq 1 ]; then
	sanitizer_reports=0
	sanitizer_scan
	if [ "$sanitizer_reports" -gt 0 ]; then
		echo "===== SANITIZER REPORTS: $sanitizer_reports (above) ====="
		failed=$((failed + sanitizer_reports))
		overall=1
	fi
fi

status=$overall
exit "$overall"
