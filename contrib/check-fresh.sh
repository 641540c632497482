#!/bin/sh
# check-fresh.sh - `make check-fresh`: proves the README's two commands on a
# pristine Debian 12 system.  Installs a minimal bookworm with debootstrap
# into a temporary folder, copies a clean `git clone` of the committed tree
# (HEAD, not the working files) into it and runs, inside the chroot, exactly
#     ./contrib/quickstart.sh
#     make -C build check
# Needs root (chroot, mount) and Debian's archive.  Exit 77 (skipped) when
# debootstrap cannot run here: not root, no debootstrap and no way to install
# it, no network, no git checkout to clone, a container that refuses mount.
# Any failure after the system is up is a real failure (exit 1).
#
# Environment: QSHARD_FRESH_MIRROR (default http://deb.debian.org/debian),
# QSHARD_FRESH_KEEP=1 keeps the folder for a post-mortem (unmounted).
set -eu

srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
mirror=${QSHARD_FRESH_MIRROR:-http://deb.debian.org/debian}

skip() {
	echo "check-fresh: $*, skipped"
	exit 77
}

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot, mount)"
command -v git >/dev/null 2>&1 || skip "no git"
head=$(git -C "$srcdir" rev-parse HEAD 2>/dev/null) || skip "'$srcdir' is not a git checkout"
if ! command -v debootstrap >/dev/null 2>&1; then
	echo "check-fresh: installing debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		debootstrap >/dev/null 2>&1 || skip "no debootstrap and apt-get cannot install it"
fi
export PATH="$PATH:/usr/sbin:/sbin"

now() { date +%s; }
t_start=$(now)
stage_t=$t_start
stage() {
	t=$(now)
	echo "check-fresh: $1 ($((t - stage_t)) s)"
	stage_t=$t
}

work=$(mktemp -d "${TMPDIR:-/var/tmp}/qshard-fresh.XXXXXX")
root=$work/root
mounted=

# Unmount everything under $root before anything is deleted; if a mount
# will not go, leave the folder rather than delete through it.
cleanup() {
	rc=$?
	for m in $mounted; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	if grep -qF " $root" /proc/mounts 2>/dev/null; then
		echo "check-fresh: mounts left under '$root'; not deleting it" >&2
	elif [ "${QSHARD_FRESH_KEEP:-0}" = 1 ]; then
		echo "check-fresh: kept '$work'"
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$root"
echo "check-fresh: debootstrap bookworm from $mirror into '$root'"
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
	tail -n 20 "$work/debootstrap.log"
	skip "debootstrap failed (no network or archive?)"
fi
stage "debootstrap done"

# /proc for the tests (io_uring probing, /proc/self), a private /dev/shm;
# debootstrap already made /dev's basic nodes, so the host's /dev stays out
mount -t proc proc "$root/proc" || skip "cannot mount /proc in the chroot"
mounted="$root/proc $mounted"
mkdir -p "$root/dev/shm" "$root/dev/pts"
if mount -t tmpfs -o mode=1777 shm "$root/dev/shm"; then
	mounted="$root/dev/shm $mounted"
fi
if mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"; then
	mounted="$root/dev/pts $mounted"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true

# a clean clone of the committed tree, nothing from the working copy
git clone -q --no-hardlinks "$srcdir" "$root/qshard"
git -C "$root/qshard" checkout -q "$head"
stage "cloned $head"

# the README's two commands, as written
chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	/bin/sh -c 'cd /qshard && ./contrib/quickstart.sh' || {
	echo "check-fresh: FAIL: ./contrib/quickstart.sh on a fresh bookworm" >&2
	exit 1
}
stage "./contrib/quickstart.sh passed"
chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	/bin/sh -c 'cd /qshard && make -C build check' >"$work/check.log" 2>&1 || {
	grep -E '^(FAIL|ERROR|# )' "$work/check.log" >&2 || tail -n 40 "$work/check.log" >&2
	for trs in "$root"/qshard/build/tests/*/*.trs; do
		grep -qE '^:test-result: (FAIL|ERROR)' "$trs" 2>/dev/null || continue
		echo "---- ${trs%.trs}.log" >&2
		tail -n 40 "${trs%.trs}.log" >&2
	done
	echo "check-fresh: FAIL: make -C build check on a fresh bookworm" >&2
	exit 1
}
grep -E '^# (TOTAL|PASS|SKIP|FAIL|ERROR):' "$work/check.log"
stage "make -C build check passed"
echo "check-fresh: PASS in $(($(now) - t_start)) s"
