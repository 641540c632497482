#!/bin/bash
# No space left on the output file system: a clear error naming the
# .partial, exit 1, a resumable .partial; after space is freed, --resume
# finishes a file identical to a clean run.  Needs root to mount a small
# tmpfs (skipped otherwise).
. "$top_srcdir/tests/cli/lib.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root to mount a tmpfs"; exit 77; }
mnt=$T/small
mkdir -p "$mnt"
mount -t tmpfs -o size=2M tmpfs "$mnt" 2>/dev/null || { echo "SKIP: cannot mount tmpfs"; exit 77; }
trap 'umount "$mnt" 2>/dev/null; rm -rf "$T"' EXIT

"$MKCKPT" --preset tiny --layers 2 -o "$T/ck" >/dev/null || fail mkckpt
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/clean.qshard" --progress none --memory 24M
size=$(stat -c %s "$T/clean.qshard")
[ "$size" -gt $((3 * 1024 * 1024)) ] || fail "checkpoint too small for the test ($size bytes)"

expect_exit 1 "$QSHARD" convert "$T/ck" -o "$mnt/o.qshard" --progress none --memory 24M
expect_err "o.qshard.partial"
expect_err "No space left on device"
expect_err "--resume"
[ -e "$mnt/o.qshard.partial" ] && [ ! -e "$mnt/o.qshard" ] || fail "no resumable .partial"

mount -o remount,size=$((size / 1024 + 1024))k "$mnt" || fail "remount"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$mnt/o.qshard" --progress none --memory 24M --resume
cmp -s "$mnt/o.qshard" "$T/clean.qshard" || fail "resumed file differs from a clean run"
[ ! -e "$mnt/o.qshard.partial" ] || fail ".partial left"
echo "PASS enospc"
