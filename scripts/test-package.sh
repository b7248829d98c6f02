#!/usr/bin/env bash
#
# scripts/test-package.sh: build the Debian package (debian/) and install it
# into a clean Debian chroot, following the README's recipes.  Run as root.
#
#   scripts/test-package.sh [--pg 15|17|18] [OPTIONS]
#
# PostgreSQL 15 (the default) is tested on Debian 12 (bookworm), 17 on
# Debian 13 (trixie), 18 on Debian unstable (sid): each Debian's own
# PostgreSQL.  NN below is that version.
#
#   1. Base: a minimal Debian (debootstrap --variant=minbase), made once and
#      cached in /var/cache/pooldiag-chroots/SUITE-pkg/base (the directory is
#      POOLDIAG_CHROOT_CACHE if set, as for scripts/chroot.sh); downloaded
#      packages are cached beside it in archives/.  Every step below works in
#      a fresh copy of it under a mktemp dir, which is removed at the end.
#   2. Build: in one copy, the README's lines for building the package run in
#      a copy of this tree (apt-get build-dep ./, then dpkg-buildpackage -us
#      -uc -b as an unprivileged user).  Exactly one package must come out,
#      postgresql-NN-pooldiag, with pooldiag.so, the control file, every
#      pooldiag--*.sql of the tree (identical to it), the JIT bitcode and the
#      README, and depend on postgresql-NN (and its JIT where Debian says so).  META.json must be
#      well-formed and agree with the control file and debian/changelog.
#   3. Package recipe: in another copy, the README's recipe for NN with the
#      package: apt-get install postgresql-NN, dpkg -i the package,
#      shared_preload_libraries in /etc/postgresql/NN/main/postgresql.conf,
#      pg_ctlcluster NN main restart, CREATE EXTENSION pooldiag.  Then the
#      worker must be running, pooldiag.sessions and pooldiag.health must
#      answer, a connection must reach pooldiag.events, and a database with
#      version 1.0 must reach the default version by the README's
#      ALTER EXTENSION pooldiag UPDATE.
#   4. Leave alone (15 only: the README's demo and test commands are for
#      Debian 12): in that chroot, with the test dependencies installed,
#      15/main is recreated with pg_createcluster and started; the README's
#      demo command and its test command for 15 (scripts/test.sh --pg 15:
#      install-deps.sh, build, both suites) run; 15/main must still run with
#      the same postmaster, its configuration files (start.conf among them)
#      and postgresql.auto.conf must be unchanged, and the package's
#      installed files untouched (dpkg --verify).
#   5. Source recipe: in a third copy, the README's recipe for NN from source
#      (make PG_CONFIG=/usr/lib/postgresql/NN/bin/pg_config install), then
#      configured and checked as in step 3.
#
# Every README line the test runs must appear verbatim in README.md, so that
# the README and the test cannot drift apart.
#
# Every chroot step runs in mount and PID namespaces of its own (unshare):
# what it mounts disappears and what it starts is killed when the step ends,
# however it ends, so nothing of it outlives this script.  Steps that start
# servers also get a network namespace with only loopback: their clusters
# cannot meet the host's (Debian's 15/main on port 5432, other test runs).
# Steps that download (apt) share the host's network, and a policy-rc.d in
# the chroot keeps packages from starting any server there.
#
# Every pg_ctlcluster, pg_createcluster and pg_dropcluster below runs inside
# such a step, on the NN/main cluster that installing postgresql-NN created
# in that chroot (a copy of the base this script built): never on a cluster
# of the host.
#
# Options:
#   --pg N             PostgreSQL major version: 15 (default), 17 or 18
#   --skip-deps        do not apt-get install the host's tools (debootstrap,
#                      iproute2); fail if they are missing
#   --no-leave-alone   skip step 4 (most of the run time)
#   --regress-only     in step 4, run `scripts/test.sh --pg 15 --regress-only`
#                      instead of the whole suite (`scripts/test.sh --pg 15`)
#   --refresh          make the cached base chroot anew
#   --keep             keep the work dir (chroots, packages, logs)
#   -h, --help         this text
#
# Prints "package: N passed, N failed" last; exits 0 only if all passed.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/{/^#/{s/^# \{0,1\}//;p}}' "$0"; }

# Inside this script's own chroot (step 4 runs the test command there) the
# package test must not start again.
if [ -n "${POOLDIAG_IN_PACKAGE_TEST:-}" ]; then
	echo "package: skipped (inside the chroot of scripts/test-package.sh)"
	exit 0
fi

# The test command as the README gives it, for PostgreSQL 15 only: the rest of
# its matrix runs in chroots of its own (scripts/chroot.sh), which this
# step's network namespace cannot download, and which check by themselves
# that a cluster they did not create is left alone.
skip_deps=0 leave_alone=1 inner_test=(scripts/test.sh --pg 15) refresh=0 keep=0
PKG_PG_MAJOR=15
while [ $# -gt 0 ]; do
	case "$1" in
	--pg)
		[ $# -ge 2 ] || pd_die "--pg needs a version"
		PKG_PG_MAJOR="$2"
		shift
		;;
	--pg=*) PKG_PG_MAJOR="${1#--pg=}" ;;
	--skip-deps) skip_deps=1 ;;
	--no-leave-alone) leave_alone=0 ;;
	--regress-only) inner_test=(scripts/test.sh --pg 15 --regress-only) ;;
	--refresh) refresh=1 ;;
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

case "$PKG_PG_MAJOR" in
15) SUITE=bookworm ;;
17) SUITE=trixie ;;
18) SUITE=sid ;;
*) pd_die "--pg: $PKG_PG_MAJOR is not 15 (Debian 12), 17 (Debian 13) or 18 (sid); no Debian archive has 16" ;;
esac
# The README's demo and test commands are for Debian 12.
[ "$PKG_PG_MAJOR" = 15 ] || leave_alone=0
MIRROR=http://deb.debian.org/debian
SECURITY_MIRROR=http://deb.debian.org/debian-security
# scripts/chroot.sh keeps its trixie and sid chroots in
# /var/cache/pooldiag-chroots (or POOLDIAG_CHROOT_CACHE); this script uses
# only SUITE-pkg there.
CACHE="${POOLDIAG_CHROOT_CACHE:-/var/cache/pooldiag-chroots}/$SUITE-pkg"
BASE="$CACHE/base"
ARCHIVES="$CACHE/archives"
PKG_NAME="postgresql-$PKG_PG_MAJOR-pooldiag"

passed=0 failed=0 status=1 workdir=""
chroot_pid="" # the unshare of the chroot step running now, for on_signal()

pass() {
	passed=$((passed + 1))
	echo "ok - $*"
}
fail() {
	failed=$((failed + 1))
	echo "not ok - $*"
}
# check_eq WHAT GOT WANT
check_eq() {
	if [ "$2" = "$3" ]; then
		pass "$1: $2"
	else
		fail "$1: got '$2', want '$3'"
	fi
}

# Unmount whatever is still mounted under DIR.  Every mount is made in a
# private mount namespace and so vanishes with it; this only guards against
# an unshare that did not get to make its namespace private.
# shellcheck disable=SC2317 # run by finish()
unmount_under() {
	local dir="$1" m
	[ -n "$dir" ] || return 0
	while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done < <(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

# shellcheck disable=SC2317 # run by the EXIT trap
finish() {
	local rc=$?
	set +e
	if [ -n "$workdir" ]; then
		unmount_under "$workdir"
		if [ "$status" -eq 0 ] && [ "$keep" -eq 0 ]; then
			rm -rf --one-file-system "$workdir"
		else
			pd_log "work directory kept: $workdir"
		fi
	fi
	if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
	echo
	echo "package: $passed passed, $failed failed"
	if [ "$status" -eq 0 ] && [ "$rc" -eq 0 ]; then exit 0; fi
	exit 1
}
trap finish EXIT
# On a signal, end the running chroot step (unshare --kill-child takes its
# whole PID namespace with it), then exit through finish().
# shellcheck disable=SC2317 # run by the INT/TERM traps
on_signal() {
	if [ -n "$chroot_pid" ]; then
		kill -TERM "$chroot_pid" 2>/dev/null || true
		wait "$chroot_pid" 2>/dev/null || true
	fi
	exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

# --- host tools ----------------------------------------------------------------
host_tools=(debootstrap unshare chroot ip flock dpkg-deb perl)
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v ip >/dev/null || missing+=(iproute2)
if [ "${#missing[@]}" -gt 0 ]; then
	[ "$skip_deps" -eq 0 ] || pd_die "missing on this machine: ${missing[*]} (run without --skip-deps)"
	pd_log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 update -q
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 \
		install -y -q --no-install-recommends "${missing[@]}"
fi
for t in "${host_tools[@]}"; do
	command -v "$t" >/dev/null || pd_die "$t not found"
done
perl -MJSON::PP -e 1 || pd_die "perl module JSON::PP missing"

# One run at a time: runs share the cached base and the archives cache.
mkdir -p "$CACHE"
exec 9>"$CACHE.lock"
if ! flock -n 9; then
	pd_log "waiting for another scripts/test-package.sh to finish"
	flock 9
fi

workdir="$(mktemp -d /var/tmp/pooldiag-pkg.XXXXXX)"
chmod 755 "$workdir"

# --- chroot helpers ------------------------------------------------------------

# in_chroot ROOT net|isolated LOG CMD...: run CMD as root in ROOT, output to
# LOG.  Both modes: own mount namespace (/proc of the own PID namespace, a
# tmpfs /dev/shm for the servers' shared memory, devpts) and own PID
# namespace, so every process CMD leaves behind is killed when it returns.
# unshare runs in the background so that a signal to this script is handled
# at once (bash defers traps while a foreground command runs).
# net: the host's network and, on /var/cache/apt/archives, the cache of
# downloaded packages.  isolated: a network namespace with only loopback.
in_chroot() {
	local root="$1" mode="$2" log="$3"
	shift 3
	local ns=(--mount --propagation private --pid --fork --kill-child --mount-proc="$root/proc") rc=0
	[ "$mode" = isolated ] && ns+=(--net)
	# shellcheck disable=SC2016 # expanded by the inner shell
	unshare "${ns[@]}" -- /bin/sh -c '
		set -e
		root="$1" mode="$2" archives="$3" pid_max="$4"
		shift 4
		# Since Linux 6.14 each PID namespace has its own pid_max, and a new
		# one starts at the largest possible; the host'"'"'s value keeps pid
		# reuse as it is on the host (t/060 waits for pids to wrap around).
		echo "$pid_max" >"$root/proc/sys/kernel/pid_max" 2>/dev/null || true
		mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
		mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"
		if [ "$mode" = isolated ]; then
			ip link set lo up
		else
			mkdir -p "$archives/partial"
			mount --bind "$archives" "$root/var/cache/apt/archives"
		fi
		exec chroot "$root" /usr/bin/env -i \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
			POOLDIAG_IN_PACKAGE_TEST=1 "$@"
	' sh "$root" "$mode" "$ARCHIVES" "$(cat /proc/sys/kernel/pid_max)" "$@" >"$log" 2>&1 </dev/null &
	chroot_pid=$!
	wait "$chroot_pid" || rc=$?
	chroot_pid=""
	return "$rc"
}

# step NAME ROOT MODE SCRIPT: run the shell SCRIPT (set -eu) in ROOT; on
# failure show the end of its log.  Returns the script's exit status.
step() {
	local name="$1" root="$2" mode="$3" script="$4" rc=0
	local log="$workdir/$name.log"
	pd_log "$name (log: $log)"
	in_chroot "$root" "$mode" "$log" /bin/bash -c "set -euo pipefail
$script" || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "----- last 60 lines of $name.log (exit $rc) -----"
		tail -n 60 "$log"
	fi
	return "$rc"
}

# result LOG NAME: the value the chroot script printed as "R:NAME:value".
result() { sed -n "s/^R:$2://p" "$1" | tail -n 1; }

make_base() {
	local tmp="$CACHE/base.new"
	rm -rf --one-file-system "$tmp"
	pd_log "creating the base chroot (debootstrap $SUITE, about a minute)"
	debootstrap --variant=minbase "$SUITE" "$tmp" "$MIRROR" >"$workdir/debootstrap.log" 2>&1 || {
		tail -n 30 "$workdir/debootstrap.log"
		pd_die "debootstrap failed"
	}
	if [ "$SUITE" = sid ]; then
		echo "deb $MIRROR sid main" >"$tmp/etc/apt/sources.list"
		# A mirror's copy of sid's Release file may be past its Valid-Until;
		# what apt installs is still checked against the archive's signature.
		echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/99pooldiag-pkg"
	else
		cat >"$tmp/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
	fi
	# No daemon may start from a package's maintainer script here (there is
	# no init system, and the host's network is shared while apt runs).
	printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
	chmod 755 "$tmp/usr/sbin/policy-rc.d"
	rm -f "$tmp"/var/cache/apt/archives/*.deb
	rm -rf --one-file-system "$BASE"
	mv "$tmp" "$BASE"
}

# new_root NAME: print a fresh copy of the base.
new_root() {
	local root="$workdir/$1"
	cp -a "$BASE" "$root"
	cp -L /etc/resolv.conf "$root/etc/resolv.conf"
	printf '%s\n' "$root"
}

# The tree as test.sh copies it (no .git, no build products).
copy_tree() {
	local dest="$1"
	mkdir -p "$dest"
	tar -C "$PD_ROOT" -cf - \
		--exclude=./.git \
		--exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		--exclude=./tmp_check --exclude=./results --exclude=./log \
		--exclude=./regression.diffs --exclude=./regression.out \
		--exclude='./build-[0-9]*' --exclude='./debian/postgresql-*' \
		--exclude=./debian/.debhelper --exclude=./debian/files \
		--exclude='./debian/*.substvars' --exclude='./debian/*debhelper*' \
		. | tar -C "$dest" -xf -
}

# --- 1. base ---------------------------------------------------------------------
if [ "$refresh" -eq 1 ] || [ ! -x "$BASE/usr/bin/apt-get" ]; then
	make_base
else
	pd_log "using the cached base chroot $BASE (--refresh makes it anew)"
fi

# --- META.json ------------------------------------------------------------------
meta_check="$(perl -MJSON::PP -e '
	local $/;
	open my $fh, "<", $ARGV[0] or die "META.json: $!\n";
	my $m = eval { decode_json(<$fh>) } or do { print "invalid JSON: $@"; exit 0 };
	my @missing = grep { !defined $m->{$_} } qw(name abstract version maintainer license provides meta-spec);
	print "missing keys: @missing" and exit 0 if @missing;
	my $p = $m->{provides}{pooldiag} or do { print "provides has no pooldiag"; exit 0 };
	print join " ", $m->{name}, $m->{version}, $p->{version}, $p->{file},
		$m->{prereqs}{runtime}{requires}{PostgreSQL} // "none";
' "$PD_ROOT/META.json")"
default_version="$(sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" "$PD_ROOT/pooldiag.control")"
deb_version="$(sed -n '1s/^pooldiag (\([^)]*\)).*/\1/p' "$PD_ROOT/debian/changelog")"
upstream_version="${deb_version%-*}"
check_eq "META.json (name, version, provides version and file, PostgreSQL)" "$meta_check" \
	"pooldiag $upstream_version $upstream_version pooldiag.control 15.0.0"
case "$upstream_version" in
"$default_version" | "$default_version".*) pass "debian/changelog version $deb_version matches default_version $default_version" ;;
*) fail "debian/changelog version $deb_version does not match default_version $default_version" ;;
esac

# --- README recipes ----------------------------------------------------------------
# The README lines this test runs, exactly as written there.  apt-get gets
# -y -q added when it runs here.
pgc="/usr/lib/postgresql/$PKG_PG_MAJOR/bin/pg_config"
recipe_build=(
	"apt-get install build-essential"
	"apt-get build-dep ./"
	"dpkg-buildpackage -us -uc -b"
)
recipe_package=(
	"apt-get install postgresql-$PKG_PG_MAJOR"
	"dpkg -i ${PKG_NAME}_${deb_version}_amd64.deb"
)
recipe_source=(
	"apt-get install postgresql-$PKG_PG_MAJOR postgresql-server-dev-$PKG_PG_MAJOR libkrb5-dev build-essential"
	"make PG_CONFIG=$pgc"
	"make PG_CONFIG=$pgc install"
)
recipe_configure=(
	"echo \"shared_preload_libraries = 'pooldiag'\" >> /etc/postgresql/$PKG_PG_MAJOR/main/postgresql.conf"
	"pg_ctlcluster $PKG_PG_MAJOR main restart"
	"runuser -u postgres -- psql -c 'CREATE EXTENSION pooldiag'"
)
recipe_upgrade=(
	"runuser -u postgres -- psql -c 'ALTER EXTENSION pooldiag UPDATE'"
)
absent=()
for line in "${recipe_build[@]}" "${recipe_package[@]}" "${recipe_source[@]}" \
	"${recipe_configure[@]}" "${recipe_upgrade[@]}"; do
	grep -qxF "$line" "$PD_ROOT/README.md" || absent+=("$line")
done
if [ "${#absent[@]}" -eq 0 ]; then
	pass "README.md has every line of the PostgreSQL $PKG_PG_MAJOR recipes"
else
	fail "README.md lacks these lines of the PostgreSQL $PKG_PG_MAJOR recipes:$(printf '\n    %s' "${absent[@]}")"
fi

# apt_y LINE: an apt-get line as it runs here, non-interactive.
apt_y() { printf '%s -y -q\n' "$1"; }

# --- 2. build ----------------------------------------------------------------------
build_root="$(new_root build-root)"
srcdir="/build/pooldiag-$upstream_version"
copy_tree "$build_root$srcdir"
if ! step build-deps "$build_root" net "
	cd $srcdir
	apt-get update -q
	$(apt_y "${recipe_build[0]} --no-install-recommends")
	$(apt_y "${recipe_build[1]} --no-install-recommends")
	useradd --create-home builder
	chown -R builder: /build"; then
	fail "installing the build dependencies"
	exit 1
fi
if step build "$build_root" isolated "
	cd $srcdir
	runuser -u builder -- ${recipe_build[2]}"; then
	pass "${recipe_build[2]}"
else
	fail "${recipe_build[2]}"
	exit 1
fi

mkdir -p "$workdir/debs"
cp "$build_root"/build/*.deb "$workdir/debs/"
debs=()
for f in "$workdir"/debs/*.deb; do
	case "$f" in *-dbgsym_*) ;; *) debs+=("$(basename "$f")") ;; esac
done
check_eq "packages built (one per installed PostgreSQL version)" "${debs[*]}" \
	"${PKG_NAME}_${deb_version}_amd64.deb"
deb="$workdir/debs/${PKG_NAME}_${deb_version}_amd64.deb"
[ -f "$deb" ] || exit 1

# Contents: what PGXS installs, every SQL script of the tree by glob, and the
# bitcode of each source file.
dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\./|/|' >"$workdir/contents"
libdir=/usr/lib/postgresql/$PKG_PG_MAJOR/lib
extdir=/usr/share/postgresql/$PKG_PG_MAJOR/extension
want=("$libdir/pooldiag.so" "$extdir/pooldiag.control" "$libdir/bitcode/pooldiag.index.bc")
for f in "$PD_ROOT"/pooldiag--*.sql; do want+=("$extdir/$(basename "$f")"); done
for f in "$PD_ROOT"/src/*.c; do want+=("$libdir/bitcode/pooldiag/src/$(basename "${f%.c}").bc"); done
absent=()
for f in "${want[@]}"; do grep -qxF "$f" "$workdir/contents" || absent+=("$f"); done
check_eq "package holds pooldiag.so, the control file, the SQL scripts (by glob) and the bitcode: ${#want[@]} files; missing" "${absent[*]:-}" ""
stray="$(grep -v -E "^(/|/usr/|/usr/lib/|/usr/share/|$libdir/.*|/usr/lib/postgresql/(|$PKG_PG_MAJOR/)|/usr/share/postgresql/(|$PKG_PG_MAJOR/|$PKG_PG_MAJOR/extension/.*)|/usr/share/doc/(|$PKG_NAME/.*))$" "$workdir/contents" || true)"
check_eq "files outside the extension's and the doc directories" "$stray" ""
if grep -qE "^/usr/share/doc/$PKG_NAME/README\.md(\.gz)?$" "$workdir/contents"; then
	pass "package holds the README"
else
	fail "package lacks /usr/share/doc/$PKG_NAME/README.md"
fi
mkdir -p "$workdir/unpacked"
dpkg-deb -x "$deb" "$workdir/unpacked"
differ=()
for f in "$PD_ROOT"/pooldiag--*.sql "$PD_ROOT/pooldiag.control"; do
	cmp -s "$f" "$workdir/unpacked$extdir/$(basename "$f")" || differ+=("$(basename "$f")")
done
check_eq "packaged SQL scripts and control file that differ from the tree's" "${differ[*]:-}" ""
depends="$(dpkg-deb -f "$deb" Depends)"
# The server, always.  Whether the JIT is a dependency too is Debian's
# choice (pg_buildext's substitution): 15 and 17 name
# postgresql-NN-jit-llvm, while sid's 18 moved its JIT to postgresql-18-jit
# and names none; the bitcode is packaged either way.
if printf '%s\n' "$depends" | tr ',' '\n' | grep -qE "^ *postgresql-$PKG_PG_MAJOR( |$)"; then
	pass "Depends: $depends"
else
	fail "Depends lacks postgresql-$PKG_PG_MAJOR: $depends"
fi
rm -rf --one-file-system "$build_root"

# --- the configuration and the checks of steps 3 and 5 ------------------------------
# Shell functions for the chroot scripts (expanded there, not here).
# q: psql as postgres, tuples only.
# shellcheck disable=SC2016
psql_fn='q() { runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 "$@"; }'
# wait_for SQL WANT: poll for up to 30 s until SQL returns WANT; print the last value.
# shellcheck disable=SC2016
wait_fn='wait_for() { local v i; for i in $(seq 1 60); do v="$(q -c "$1")"; [ "$v" = "$2" ] && break; sleep 0.5; done; printf "%s\n" "$v"; }'

# configure_script: the chroot script that starts NN/main as the package's
# postinst does where there is an init system, runs the README's
# configuration lines, and prints what check_configured() checks.
configure_script() {
	cat <<EOF
$psql_fn
$wait_fn
# Where there is an init system, installing postgresql-$PKG_PG_MAJOR has started $PKG_PG_MAJOR/main.
pg_ctlcluster $PKG_PG_MAJOR main start
$(printf '%s\n' "${recipe_configure[@]}")
echo R:preload:\$(q -c 'SHOW shared_preload_libraries')
echo R:extversion:\$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'pooldiag'")
echo R:default_version:\$(q -c "SELECT default_version FROM pg_available_extensions WHERE name = 'pooldiag'")
echo R:worker:\$(wait_for 'SELECT worker_state FROM pooldiag.health' running)
echo R:worker_pid:\$(q -c 'SELECT worker_pid IS NOT NULL FROM pooldiag.health')
echo R:own_session:\$(q -c 'SELECT state FROM pooldiag.sessions WHERE pid = pg_backend_pid()')
runuser -u postgres -- env PGAPPNAME=pkgtest-connect psql -X -At -c 'SELECT 1' >/dev/null
echo R:connect_event:\$(wait_for "SELECT count(*) FROM pooldiag.events WHERE event = 'connect' AND application_name = 'pkgtest-connect'" 1)
echo R:dropped:\$(q -c 'SELECT events_dropped FROM pooldiag.health')
EOF
}

# check_configured LOG WHAT
check_configured() {
	local log="$1" what="$2"
	check_eq "$what: shared_preload_libraries" "$(result "$log" preload)" pooldiag
	check_eq "$what: installed version" "$(result "$log" extversion)" "$default_version"
	check_eq "$what: default version" "$(result "$log" default_version)" "$default_version"
	check_eq "$what: pooldiag.health worker_state" "$(result "$log" worker)" running
	check_eq "$what: pooldiag.health worker_pid is set" "$(result "$log" worker_pid)" t
	check_eq "$what: pooldiag.sessions shows the querying session" "$(result "$log" own_session)" active
	check_eq "$what: connect events in pooldiag.events for one connection" "$(result "$log" connect_event)" 1
	check_eq "$what: pooldiag.health events_dropped" "$(result "$log" dropped)" 0
}

# --- 3. the package recipe -----------------------------------------------------------
root="$(new_root root)"
cp "$deb" "$root/root/"
if step package-install "$root" net "
	cd /root
	apt-get update -q
	$(apt_y "${recipe_package[0]}")
	${recipe_package[1]}
	echo R:status:\$(dpkg-query -W -f '\${db:Status-Status}' $PKG_NAME)
	echo R:clusters:\$(pg_lsclusters -h | awk '{ print \$1 \"/\" \$2 \"/\" \$4 }')"; then
	pass "${recipe_package[*]}"
else
	fail "${recipe_package[*]}"
	exit 1
fi
check_eq "package state" "$(result "$workdir/package-install.log" status)" installed
check_eq "cluster made by postgresql-$PKG_PG_MAJOR (not started: no init system here)" \
	"$(result "$workdir/package-install.log" clusters)" "$PKG_PG_MAJOR/main/down"

rc=0
step package-recipe "$root" isolated "
	$(configure_script)
	# Upgrading: a database with version 1.0, updated as the README says.
	# 1.0's control file made CREATE EXTENSION create schema pooldiag; this
	# one leaves that to the install script, so the schema comes first here.
	runuser -u postgres -- createdb upgrade_test
	q -d upgrade_test -c 'CREATE SCHEMA pooldiag' -c \"CREATE EXTENSION pooldiag VERSION '1.0'\"
	echo R:before_update:\$(q -d upgrade_test -c \"SELECT extversion FROM pg_extension WHERE extname = 'pooldiag'\")
	(cd /tmp && PGDATABASE=upgrade_test ${recipe_upgrade[0]})
	echo R:after_update:\$(q -d upgrade_test -c \"SELECT extversion FROM pg_extension WHERE extname = 'pooldiag'\")
	echo R:updated_sessions:\$(q -d upgrade_test -c 'SELECT count(*) > 0 FROM pooldiag.sessions')
	echo R:no_path:\$(q -c \"SELECT string_agg(source, ',' ORDER BY source) FROM pg_extension_update_paths('pooldiag') WHERE target = '$default_version' AND path IS NULL\")
	pg_ctlcluster $PKG_PG_MAJOR main stop" || rc=$?
log="$workdir/package-recipe.log"
if [ "$rc" -eq 0 ]; then
	pass "package: configuration, restart, CREATE EXTENSION, update"
else
	fail "package: configuration, restart, CREATE EXTENSION, update (exit $rc)"
fi
check_configured "$log" package
check_eq "package: version before ALTER EXTENSION UPDATE" "$(result "$log" before_update)" 1.0
check_eq "package: version after ALTER EXTENSION UPDATE (the default)" "$(result "$log" after_update)" "$default_version"
check_eq "package: pooldiag.sessions after the update" "$(result "$log" updated_sessions)" t
check_eq "package: versions with no update path to $default_version" "$(result "$log" no_path)" ""

# --- 4. the demo and the tests leave a cluster they did not create alone -------------
if [ "$leave_alone" -eq 1 ]; then
	copy_tree "$root/srv/pooldiag"
	if step test-deps "$root" net "cd /srv/pooldiag && scripts/install-deps.sh"; then
		pass "scripts/install-deps.sh in the chroot"
	else
		fail "scripts/install-deps.sh in the chroot"
		exit 1
	fi
	conf=/etc/postgresql/$PKG_PG_MAJOR/main
	data=/var/lib/postgresql/$PKG_PG_MAJOR/main
	rc=0
	step leave-alone "$root" isolated "
		snapshot() {
			pg_lsclusters -h
			head -n 1 $data/postmaster.pid
			(cd $conf && find . -type f | sort | xargs md5sum)
			md5sum $data/postgresql.auto.conf
		}
		pg_dropcluster $PKG_PG_MAJOR main
		pg_createcluster $PKG_PG_MAJOR main
		pg_ctlcluster $PKG_PG_MAJOR main start
		snapshot >/tmp/before
		cat /tmp/before
		cd /srv/pooldiag
		demo_rc=0
		scripts/demo.sh >/tmp/demo.log 2>&1 || demo_rc=\$?
		echo R:demo:\$demo_rc
		test_rc=0
		${inner_test[*]} >/tmp/test.log 2>&1 || test_rc=\$?
		echo R:test:\$test_rc
		echo R:test_summary:\$(grep -E '^[0-9]+ passed, [0-9]+ failed' /tmp/test.log | tail -n 1)
		snapshot >/tmp/after
		echo R:same:\$(cmp -s /tmp/before /tmp/after && echo yes || echo no)
		diff /tmp/before /tmp/after || true
		echo R:running:\$(pg_lsclusters -h | awk '\$1 == $PKG_PG_MAJOR && \$2 == \"main\" { print \$4 }')
		echo R:verify:\$(dpkg --verify $PKG_NAME | tr '\n' ' ')
		pg_ctlcluster $PKG_PG_MAJOR main stop" || rc=$?
	log="$workdir/leave-alone.log"
	cp "$root/tmp/demo.log" "$workdir/demo.log" 2>/dev/null || true
	cp "$root/tmp/test.log" "$workdir/test.log" 2>/dev/null || true
	[ "$rc" -eq 0 ] || fail "leave-alone step (exit $rc)"
	check_eq "scripts/demo.sh in the chroot: exit status" "$(result "$log" demo)" 0
	[ "$(result "$log" demo)" = 0 ] || tail -n 40 "$workdir/demo.log"
	check_eq "${inner_test[*]} in the chroot ($(result "$log" test_summary)): exit status" "$(result "$log" test)" 0
	[ "$(result "$log" test)" = 0 ] || tail -n 60 "$workdir/test.log"
	check_eq "15/main: same postmaster, same clusters, same configuration files" "$(result "$log" same)" yes
	check_eq "15/main still running" "$(result "$log" running)" online
	check_eq "dpkg --verify $PKG_NAME (installed files untouched)" "$(result "$log" verify)" ""
fi
rm -rf --one-file-system "$root"

# --- 5. the source recipe ---------------------------------------------------------------
root="$(new_root source-root)"
copy_tree "$root/root/pooldiag"
if step source-install "$root" net "
	apt-get update -q
	$(apt_y "${recipe_source[0]}")"; then
	pass "${recipe_source[0]}"
else
	fail "${recipe_source[0]}"
	exit 1
fi
rc=0
step source-recipe "$root" isolated "
	cd /root/pooldiag
	${recipe_source[1]}
	${recipe_source[2]}
	cd /
	$(configure_script)
	pg_ctlcluster $PKG_PG_MAJOR main stop" || rc=$?
if [ "$rc" -eq 0 ]; then
	pass "source: make, make install, configuration, restart, CREATE EXTENSION"
else
	fail "source: make, make install, configuration, restart, CREATE EXTENSION (exit $rc)"
fi
check_configured "$workdir/source-recipe.log" source
rm -rf --one-file-system "$root"

if [ "$failed" -eq 0 ]; then status=0; fi
exit "$status"
