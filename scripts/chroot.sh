#!/usr/bin/env bash
#
# scripts/chroot.sh: run the test suite against a PostgreSQL major version
# that this machine's Debian does not ship, inside a Debian chroot that does.
# Run as root.  scripts/test.sh calls it for --pg 17 and --pg 18.
#
#   scripts/chroot.sh 17 [TEST.SH OPTIONS...]    Debian 13 (trixie)
#   scripts/chroot.sh 18 [TEST.SH OPTIONS...]    Debian sid
#
# The chroot is built once, with debootstrap from the Debian archive
# (POOLDIAG_DEBIAN_MIRROR, default http://deb.debian.org/debian; sid's Release
# file may be past its Valid-Until, so apt in the chroot does not check that),
# and gets that version's packages from scripts/install-deps.sh run inside
# it, so the package list is the one the host uses.  It is cached in
# POOLDIAG_CHROOT_CACHE (default /var/cache/pooldiag-chroots), one directory
# per suite, and reused; when install-deps.sh has changed since, it is run
# in the cached chroot again.
#
# Each run works in a throw-away overlay over the cached chroot, in a mount
# namespace of its own: the cache stays as built, concurrent runs never see
# each other's files, and every mount of the run (the overlay, /proc, /dev,
# /dev/pts, a private tmpfs on /dev/shm for PostgreSQL's shared memory) goes
# away with the namespace, also when the run is killed; a trap unmounts them
# on a normal exit too.  Where overlayfs is not available, runs use the
# cached chroot itself, one at a time.
#
# Inside, the repository is copied to /root/pooldiag, and `scripts/test.sh
# --single --pg N [OPTIONS]` runs there as root; exactly as on the host, it
# builds in a copy owned by an unprivileged user and runs the servers and the
# tests as that user.  Next to it runs a cluster that Debian's
# pg_createcluster made, as on an administrator's machine; the test command
# must leave it alone (see ns_test), which counts as one more test.  The
# output ends with "N passed, N failed"; the exit status is 0 only if all
# passed.  When a run fails (or with --keep) its files stay in the overlay's
# upper directory, whose path is printed.
#
# Options, before the version:
#   --rebuild   build the chroot afresh even when a cached one exists
#   --prepare   only build (or update) the chroot; run no tests
#   -h, --help  this text
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PD_MIRROR="${POOLDIAG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PD_CHROOT_CACHE="${POOLDIAG_CHROOT_CACHE:-/var/cache/pooldiag-chroots}"
# The marker a finished chroot carries; a directory without it is unfinished.
PD_CHROOT_STAMP=etc/pooldiag-chroot

usage() { sed -n '2,/^set -euo/{/^#/{s/^# \{0,1\}//;p}}' "$0"; }

# copy_repo DEST: the repository without .git and build products, as
# pd_copy_tree does (root-owned here; test.sh makes its own copy for the
# test user).
copy_repo() {
	mkdir -p "$1"
	tar -C "$PD_ROOT" -cf - \
		--exclude=./.git \
		--exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		--exclude=./tmp_check --exclude=./results --exclude=./log \
		--exclude=./regression.diffs --exclude=./regression.out \
		. | tar -C "$1" -xf -
}

# in_chroot ROOT CMD...: run CMD in ROOT with a clean environment, in the
# background so that our INT/TERM traps run at once; they pass the signal
# on to it.  Knobs a developer may set on purpose are passed through.
child=""
in_chroot() {
	local root="$1" v
	shift
	local envv=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive
		"POOLDIAG_PG_MAJOR=$PD_PG_MAJOR")
	for v in PG_TEST_TIMEOUT_DEFAULT PG_TEST_NOCLEAN PG_TEST_EXTRA PROVE_FLAGS CI TERM \
		POOLDIAG_TEST_PHASE_TIMEOUT NODE_EXTRA_CA_CERTS; do
		if [ -n "${!v:-}" ]; then envv+=("$v=${!v}"); fi
	done
	chroot "$root" /usr/bin/env -i "${envv[@]}" "$@" &
	child=$!
	local rc=0
	wait "$child" || rc=$?
	child=""
	return "$rc"
}

# --- inside the private mount namespace ----------------------------------------
# ns_mount_system ROOT: what a test run in ROOT needs: /proc (ps, pg_ctl),
# /dev and /dev/pts (ttys, /dev/null, /dev/urandom) from the host, and a
# private /dev/shm, where PostgreSQL keeps its dynamic shared memory.
ns_mounted=()
ns_mount_system() {
	local root="$1"
	mount --bind /proc "$root/proc"
	ns_mounted=("$root/proc" "${ns_mounted[@]}")
	mount --bind /dev "$root/dev"
	ns_mounted=("$root/dev" "${ns_mounted[@]}")
	mount --bind /dev/pts "$root/dev/pts"
	ns_mounted=("$root/dev/pts" "${ns_mounted[@]}")
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
	ns_mounted=("$root/dev/shm" "${ns_mounted[@]}")
}

# ns_mount_trust ROOT: the host's certificate bundle, read-only, in place of
# the chroot's.  A network that reaches registries through a proxy with its
# own certificate authority (as in CI, where npm's registry is reached that
# way) is trusted inside as it is outside; t/102 runs npm install there.
# Debian's nodejs, npm and apt read /etc/ssl/certs/ca-certificates.crt.
ns_mount_trust() {
	local root="$1" bundle=/etc/ssl/certs/ca-certificates.crt
	[ -f "$bundle" ] || return 0
	mkdir -p "$root/etc/ssl/certs"
	[ -e "$root$bundle" ] || : >"$root$bundle"
	mount --bind "$bundle" "$root$bundle"
	mount -o remount,bind,ro "$root$bundle"
	ns_mounted=("$root$bundle" "${ns_mounted[@]}")
}

# shellcheck disable=SC2317 # run by the EXIT trap
ns_sentinel_pidfile=""
ns_cleanup() {
	local rc=$? m pid
	set +e
	if [ -n "$child" ]; then
		kill -TERM "$child" 2>/dev/null
		wait "$child" 2>/dev/null
	fi
	# The sentinel's postmaster, if the run ended before dropping it: it is
	# a daemon outside our process tree, and would go on holding its port.
	if [ -n "$ns_sentinel_pidfile" ] && [ -f "$ns_sentinel_pidfile" ]; then
		pid="$(head -n 1 "$ns_sentinel_pidfile")"
		if [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null; then
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		fi
	fi
	# Innermost first.  The namespace drops them anyway when it ends; this
	# only makes a normal exit tidy.
	for m in "${ns_mounted[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
	exit "$rc"
}

# ns_build SUITE DIR: debootstrap SUITE into DIR and install the packages.
ns_build() {
	local suite="$1" dir="$2"
	pd_log "debootstrap $suite into $dir from $PD_MIRROR"
	# minbase has apt, bash, coreutils, util-linux (runuser) and passwd
	# (useradd); install-deps.sh adds the rest.
	debootstrap --variant=minbase "$suite" "$dir" "$PD_MIRROR" >"$dir.debootstrap.log" 2>&1 || {
		tail -n 40 "$dir.debootstrap.log" >&2
		[ ! -f "$dir/debootstrap/debootstrap.log" ] || tail -n 40 "$dir/debootstrap/debootstrap.log" >&2
		pd_die "debootstrap $suite failed"
	}
	rm -f "$dir.debootstrap.log"
	printf 'deb %s %s main\n' "$PD_MIRROR" "$suite" >"$dir/etc/apt/sources.list"
	cat >"$dir/etc/apt/apt.conf.d/90pooldiag" <<'EOF'
// scripts/chroot.sh: sid's Release file is often past its Valid-Until;
// what we install is still checked against the archive's signature.
Acquire::Check-Valid-Until "false";
Acquire::Retries "3";
APT::Install-Recommends "false";
EOF
	# Services never start in the chroot, and installing postgresql-NN
	# creates no cluster there: the tests run only their own clusters.
	printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
	chmod 0755 "$dir/usr/sbin/policy-rc.d"
	mkdir -p "$dir/etc/postgresql-common/createcluster.d"
	printf '# scripts/chroot.sh\ncreate_main_cluster = false\n' \
		>"$dir/etc/postgresql-common/createcluster.d/pooldiag.conf"
	cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
}

# ns_install_deps ROOT: scripts/install-deps.sh inside ROOT, for PD_PG_MAJOR.
ns_install_deps() {
	local root="$1"
	rm -rf "$root/root/pooldiag-deps"
	copy_repo "$root/root/pooldiag-deps"
	in_chroot "$root" bash /root/pooldiag-deps/scripts/install-deps.sh ||
		pd_die "installing the PostgreSQL $PD_PG_MAJOR packages in $root failed"
	rm -rf "$root/root/pooldiag-deps"
	in_chroot "$root" apt-get clean
}

# ns_main MODE ARGS...: the part of a run that needs the private namespace.
#   build SUITE DIR      debootstrap into DIR and install the packages
#   deps ROOT            re-run install-deps.sh in the cached ROOT
#   test ROOT RUNDIR ... the test run, in an overlay under RUNDIR over ROOT
#                        (RUNDIR "-": in ROOT itself)
ns_main() {
	local mode="$1"
	shift
	trap ns_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	case "$mode" in
	build)
		ns_build "$1" "$2"
		ns_mount_system "$2"
		ns_install_deps "$2"
		;;
	deps)
		ns_mount_system "$1"
		ns_install_deps "$1"
		;;
	test)
		local lower="$1" run="$2" root
		shift 2
		if [ "$run" = - ]; then
			root="$lower"
		else
			mkdir -p "$run/upper" "$run/work" "$run/root"
			mount -t overlay overlay \
				-o "lowerdir=$lower,upperdir=$run/upper,workdir=$run/work" "$run/root"
			ns_mounted=("$run/root")
			root="$run/root"
		fi
		ns_mount_system "$root"
		ns_mount_trust "$root"
		rm -rf "$root/root/pooldiag"
		copy_repo "$root/root/pooldiag"
		ns_test "$root" "$@"
		;;
	esac
}

# ns_test ROOT ARGS...: the suite in ROOT, next to a cluster it did not
# create.  Before the suite, Debian's own tools create and start the
# cluster NN/sentinel, as an administrator would have one; afterwards it
# must still run with the same postmaster, and its configuration files
# must be unchanged: the test command leaves alone whatever it did not
# create.  That check counts as one more test in the last line, "N passed,
# N failed".
ns_test() {
	local root="$1" out rc=0 ok=0 bad=0 line
	shift
	local conf="/etc/postgresql/$PD_PG_MAJOR/sentinel"
	local data="/var/lib/postgresql/$PD_PG_MAJOR/sentinel"
	# No TCP: the network is the host's, where other clusters (Debian's
	# 5432, another run's sentinel) may listen.  pg_createcluster's
	# -o listen_addresses= leaves the default, localhost, so the setting goes
	# into the cluster's conf.d, which Debian's postgresql.conf includes;
	# the socket is in the chroot's own /var/run/postgresql.
	in_chroot "$root" pg_createcluster "$PD_PG_MAJOR" sentinel -p 5439 >/dev/null ||
		pd_die "could not create the sentinel cluster $PD_PG_MAJOR/sentinel"
	mkdir -p "$root$conf/conf.d"
	echo "listen_addresses = ''" >"$root$conf/conf.d/pooldiag-sentinel.conf"
	in_chroot "$root" pg_ctlcluster "$PD_PG_MAJOR" sentinel start >/dev/null ||
		pd_die "could not start the sentinel cluster $PD_PG_MAJOR/sentinel"
	# A killed run must not leave it running: ns_cleanup stops it.
	ns_sentinel_pidfile="$root$data/postmaster.pid"
	local pid_before sums_before
	pid_before="$(head -n 1 "$root$data/postmaster.pid")"
	sums_before="$(cd "$root" && sha256sum ".$conf"/*.conf ".$data/postgresql.auto.conf")"
	pd_log "sentinel cluster $PD_PG_MAJOR/sentinel is running (postmaster $pid_before)"

	out="$root/root/test-output.log"
	in_chroot "$root" bash /root/pooldiag/scripts/test.sh --single --pg "$PD_PG_MAJOR" "$@" \
		> >(tee "$out") 2>&1 || rc=$?
	wait "$!" 2>/dev/null || true

	local problems=() pid_after="" sums_after
	[ ! -f "$root$data/postmaster.pid" ] || pid_after="$(head -n 1 "$root$data/postmaster.pid")"
	if [ "$pid_after" != "$pid_before" ] || ! kill -0 "$pid_before" 2>/dev/null; then
		problems+=("its postmaster $pid_before is gone (now: ${pid_after:-none})")
	fi
	sums_after="$(cd "$root" && sha256sum ".$conf"/*.conf ".$data/postgresql.auto.conf")"
	[ "$sums_after" = "$sums_before" ] || problems+=("its configuration files changed")
	in_chroot "$root" pg_dropcluster --stop "$PD_PG_MAJOR" sentinel >/dev/null 2>&1 || true
	ns_sentinel_pidfile=""

	line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1 || true)"
	if [ -n "$line" ]; then
		ok="${line%% passed*}"
		bad="${line#*passed, }"
		bad="${bad%% failed}"
	elif [ "$rc" -ne 0 ]; then
		bad=1
	fi
	if [ "${#problems[@]}" -eq 0 ]; then
		echo "sentinel cluster $PD_PG_MAJOR/sentinel: left alone, ok"
		ok=$((ok + 1))
	else
		echo "sentinel cluster $PD_PG_MAJOR/sentinel: FAILED: ${problems[*]}"
		bad=$((bad + 1))
		rc=1
	fi
	echo "$ok passed, $bad failed"
	return "$rc"
}

# overlay_works DIR: can this machine mount an overlay with its upper
# directory under DIR?  (Not where DIR itself is on an overlay, e.g. in some
# containers.)
overlay_works() {
	local t
	t="$(mktemp -d "$1/overlay-check.XXXXXX")"
	mkdir "$t/l" "$t/u" "$t/w" "$t/m"
	local rc=0
	unshare -m --propagation private \
		mount -t overlay overlay -o "lowerdir=$t/l,upperdir=$t/u,workdir=$t/w" "$t/m" \
		2>/dev/null || rc=1
	rm -rf "$t"
	return "$rc"
}

# mounts_under DIR: is anything mounted at or below DIR (in our namespace)?
mounts_under() {
	awk -v d="$1" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' \
		/proc/self/mountinfo
}

# --- main --------------------------------------------------------------------------
if [ "${1:-}" = --ns ]; then
	shift
	ns_main "$@"
	exit 0
fi

rebuild=0 prepare_only=0
while [ $# -gt 0 ]; do
	case "$1" in
	--rebuild) rebuild=1 ;;
	--prepare) prepare_only=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*) break ;;
	esac
	shift
done
[ $# -ge 1 ] || {
	usage >&2
	pd_die "which PostgreSQL version? (17 or 18)"
}
PD_PG_MAJOR="$1"
shift
export POOLDIAG_PG_MAJOR="$PD_PG_MAJOR"
suite="$(pd_pg_suite "$PD_PG_MAJOR")"
[ -n "$suite" ] || pd_die "no Debian suite ships PostgreSQL $PD_PG_MAJOR, so there is no chroot for it"
keep=0
for a in "$@"; do [ "$a" != --keep ] || keep=1; done

pd_require_root
for tool in debootstrap unshare flock chroot; do
	command -v "$tool" >/dev/null ||
		pd_die "$tool not found: run scripts/install-deps.sh --chroot-tools (debootstrap) or install util-linux"
done

mkdir -p "$PD_CHROOT_CACHE"
root="$PD_CHROOT_CACHE/$suite"
run=""
ns_pid=""

# shellcheck disable=SC2317 # run by the EXIT trap
finish() {
	local rc=$?
	set +e
	if [ -n "$ns_pid" ]; then
		kill -TERM "$ns_pid" 2>/dev/null
		wait "$ns_pid" 2>/dev/null
	fi
	if [ -n "$run" ] && [ "$run" != - ]; then
		if [ "$rc" -eq 0 ] && [ "$keep" -eq 0 ]; then
			rm -rf "$run"
		else
			pd_log "the run's files are kept in $run/upper (the chroot's /tmp is $run/upper/tmp); remove $run when done"
		fi
	fi
	exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ns MODE ARGS...: this script's ns_main in a private mount namespace, in the
# background so that our traps run at once.  Its children do not inherit the
# lock's descriptor, so a server a test left behind cannot hold the lock.
ns() {
	unshare -m --propagation private bash "${BASH_SOURCE[0]}" --ns "$@" 9>&- &
	ns_pid=$!
	local rc=0
	wait "$ns_pid" || rc=$?
	ns_pid=""
	return "$rc"
}

# The packages the chroot should have are those of install-deps.sh: the
# stamp records its checksum, and a chroot with another one is updated.
deps_sum="$(sha256sum "$PD_ROOT/scripts/install-deps.sh" | cut -d' ' -f1)"
chroot_current() {
	[ "$rebuild" -eq 0 ] && [ -f "$root/$PD_CHROOT_STAMP" ] &&
		grep -qx "deps=$deps_sum" "$root/$PD_CHROOT_STAMP"
}

# One lock per suite: building or updating the chroot excludes everything
# else; test runs in overlays share it.
exec 9>"$PD_CHROOT_CACHE/$suite.lock"
flock -s 9
if ! chroot_current; then
	flock -u 9
	flock -x 9
	if [ "$rebuild" -eq 1 ] || [ ! -f "$root/$PD_CHROOT_STAMP" ]; then
		start=$SECONDS
		for d in "$root.new" "$root"; do
			! mounts_under "$d" || pd_die "something is mounted under $d; unmount it first"
		done
		rm -rf "$root.new"
		pd_log "building the $suite chroot for PostgreSQL $PD_PG_MAJOR (log: $root.build.log)"
		ns build "$suite" "$root.new" >"$root.build.log" 2>&1 || {
			tail -n 60 "$root.build.log"
			pd_die "building the $suite chroot failed (log: $root.build.log)"
		}
		printf 'suite=%s\nmirror=%s\nbuilt=%s\ndeps=%s\n' "$suite" "$PD_MIRROR" \
			"$(date -u +%FT%TZ)" "$deps_sum" >"$root.new/$PD_CHROOT_STAMP"
		rm -rf "$root"
		mv "$root.new" "$root"
		rebuild=0
		pd_log "built the $suite chroot in $((SECONDS - start)) s: $root"
	elif ! chroot_current; then
		pd_log "scripts/install-deps.sh changed: updating the $suite chroot (log: $root.build.log)"
		ns deps "$root" >"$root.build.log" 2>&1 || {
			tail -n 60 "$root.build.log"
			pd_die "updating the $suite chroot failed (log: $root.build.log)"
		}
		sed -i "s/^deps=.*//; /^$/d" "$root/$PD_CHROOT_STAMP"
		echo "deps=$deps_sum" >>"$root/$PD_CHROOT_STAMP"
	fi
	flock -s 9
fi
pd_log "using the $suite chroot $root (built $(sed -n 's/^built=//p' "$root/$PD_CHROOT_STAMP"))"

[ "$prepare_only" -eq 0 ] || exit 0

if overlay_works "$PD_CHROOT_CACHE"; then
	run="$(mktemp -d "$PD_CHROOT_CACHE/run-$suite.XXXXXX")"
else
	pd_warn "overlayfs is not available under $PD_CHROOT_CACHE: running in the cached chroot itself, one run at a time"
	flock -u 9
	flock -x 9
	run=-
fi

pd_log "running the tests for PostgreSQL $PD_PG_MAJOR in the $suite chroot"
ns test "$root" "$run" "$@"
