#!/bin/bash
# The output is written with O_DIRECT where the file system allows, through
# the page cache (written back and dropped as it goes) where it does not
# (tmpfs) or where QSHARD_DIRECT_OUTPUT=0 asks; after convert the page
# cache holds none of the output file's pages either way (src/format/
# outbuf.h, issue 16), and the bytes are the same on every path.  A run
# killed with -9 mid-way resumes to the same bytes on both paths.
. "$top_srcdir/tests/cli/lib.sh"
need_numpy
command -v fincore >/dev/null 2>&1 || {
	echo "SKIP: fincore (util-linux) not installed"
	exit 77
}
fstype() {
	stat -f -c %T "$1"
}
case "$(fstype "$T")" in
tmpfs | ramfs | overlayfs) echo "SKIP: $T is $(fstype "$T"): no page cache to check"; exit 77 ;;
esac
cached() {
	local n
	n=$(fincore --noheadings --output PAGES "$1" | tr -d ' ')
	echo "${n:-0}"
}

"$MKCKPT" --preset tiny --layers 2 --seed 9 -o "$T/ck" >/dev/null || fail mkckpt
opts=(--progress none -T 2 --memory 256M)

# direct (the default on this file system) and forced buffered
trace=()
# LeakSanitizer cannot run under ptrace: a sanitizer build is traced
# with leak checking off (the rest of the suite checks leaks)
command -v strace >/dev/null 2>&1 &&
	trace=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
	       strace -f -e trace=openat -o "$T/trace")
expect_exit 0 "${trace[@]}" "$QSHARD" convert "$T/ck" -o "$T/direct.qs" "${opts[@]}"
[ "$(cached "$T/direct.qs")" = 0 ] || fail "direct: $(cached "$T/direct.qs") output pages cached"
if [ ${#trace[@]} -gt 0 ]; then
	grep -q 'direct.qs.partial", O_WRONLY|O_DIRECT.* = [0-9]' "$T/trace" ||
		fail "the output was not opened with O_DIRECT: $(grep partial "$T/trace")"
fi
QSHARD_DIRECT_OUTPUT=0 expect_exit 0 "${trace[@]}" "$QSHARD" convert "$T/ck" -o "$T/buffered.qs" "${opts[@]}"
[ "$(cached "$T/buffered.qs")" = 0 ] || fail "buffered: $(cached "$T/buffered.qs") output pages cached"
if [ ${#trace[@]} -gt 0 ] && grep -q 'buffered.qs.partial", O_WRONLY|O_DIRECT' "$T/trace"; then
	fail "QSHARD_DIRECT_OUTPUT=0 still opened O_DIRECT"
fi
cmp -s "$T/direct.qs" "$T/buffered.qs" || fail "direct and buffered output differ"

# tmpfs refuses O_DIRECT: the buffered fallback writes the same bytes
shm=
for d in /dev/shm /run/shm; do
	[ -d "$d" ] && [ -w "$d" ] && [ "$(fstype "$d")" = tmpfs ] && { shm=$d; break; }
done
if [ -n "$shm" ]; then
	s=$(mktemp -d "$shm/qshard-cli.XXXXXX")
	trap 'rm -rf "$T" "$s"' EXIT
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$s/out.qs" "${opts[@]}"
	cmp -s "$T/direct.qs" "$s/out.qs" || fail "tmpfs (buffered fallback) output differs"
else
	echo "note: no writable tmpfs, fallback on tmpfs not exercised"
fi

# kill -9 mid-run, then --resume, on both paths: the bytes of a clean run
"$MKCKPT" --preset tiny --layers 8 --seed 9 -o "$T/ck6" >/dev/null || fail mkckpt
expect_exit 0 "$QSHARD" convert "$T/ck6" -o "$T/clean.qs" "${opts[@]}" --scheme adpq
for mode in 1 0; do
	out=$T/killed$mode.qs
	QSHARD_DIRECT_OUTPUT=$mode "$QSHARD" convert "$T/ck6" -o "$out" "${opts[@]}" --scheme adpq -T 1 &
	pid=$!
	# wait for some tensors on file, then kill
	for _ in $(seq 200); do
		[ "$(stat -c %s "$out.partial" 2>/dev/null || echo 0)" -gt 1000000 ] && break
		sleep 0.02
	done
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	if [ -f "$out.partial" ]; then
		QSHARD_DIRECT_OUTPUT=$mode expect_exit 0 "$QSHARD" convert "$T/ck6" -o "$out" "${opts[@]}" \
			--scheme adpq --resume
		[ "$(cached "$out")" = 0 ] || fail "mode $mode: $(cached "$out") pages cached after resume"
	else
		# finished before the kill landed (a kill between the rename
		# and the summary's read may leave those pages cached)
		echo "note: mode $mode: the run finished before kill -9"
	fi
	[ -f "$out" ] || fail "mode $mode: no output"
	cmp -s "$out" "$T/clean.qs" || fail "QSHARD_DIRECT_OUTPUT=$mode: resumed output differs"
done
echo "PASS output_cache"
