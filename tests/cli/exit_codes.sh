#!/bin/bash
# The documented exit codes (qshard(1)) and the .partial rules: usage 2,
# existing .partial 6, memory window 7, SIGINT 5 with a resumable .partial
# whose --resume gives the same bytes as an uninterrupted run.
. "$top_srcdir/tests/cli/lib.sh"

expect_exit 2 "$QSHARD"
expect_exit 2 "$QSHARD" frobnicate
expect_err "unknown command 'frobnicate'"
expect_exit 0 "$QSHARD" --version
expect_exit 2 "$QSHARD" convert
expect_exit 2 "$QSHARD" convert in -o out --io floppy
expect_exit 2 "$QSHARD" convert in -o out --memory lots
expect_exit 2 "$QSHARD" convert in -o out -T 0
expect_exit 2 "$QSHARD" unpack x -o y --dtype q4
expect_exit 2 "$QSHARD" verify
expect_exit 2 "$QSHARD" inspect

"$MKCKPT" --preset tiny --layers 2 -o "$T/ck" >/dev/null || fail mkckpt
expect_exit 2 "$QSHARD" convert "$T/ck" -o "$T/o.qshard" --scheme 'rtn:bits=5'
expect_err "bits"
expect_exit 2 "$QSHARD" convert "$T/ck" -o "$T/o.qshard" --scheme 'nosuch'
expect_exit 1 "$QSHARD" convert "$T/missing" -o "$T/o.qshard"
expect_err "'$T/missing'"

# a window too small for one row names the figure it needs
expect_exit 7 "$QSHARD" convert "$T/ck" -o "$T/o.qshard" --memory 9M -T 1
expect_err "MiB"
[ ! -e "$T/o.qshard" ] && [ ! -e "$T/o.qshard.partial" ] || fail "output left by a refused run"

# an existing .partial is refused without --resume or --force
printf 'junk' >"$T/o.qshard.partial"
expect_exit 6 "$QSHARD" convert "$T/ck" -o "$T/o.qshard" --progress none
expect_err "--resume"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/o.qshard" --progress none --force
[ ! -e "$T/o.qshard.partial" ] || fail ".partial left after --force run"
cp "$T/o.qshard" "$T/clean.qshard"

# SIGINT: exit 5, the resume command printed, --resume finishes identically
"$MKCKPT" --preset 1b --layers 1 -o "$T/big" >/dev/null || fail mkckpt
expect_exit 0 "$QSHARD" convert "$T/big" -o "$T/big-clean.qshard" --progress none -T 2
# The signal must land mid-run: each attempt interrupts earlier (once the
# .partial holds a tensor record, then as soon as it exists); a run that
# finished first is retried, and never landing is a failure, not a pass.
rc=
for attempt in 1 2 3 4 5 6; do
	rm -f "$T/big.qshard" "$T/big.qshard.partial"
	"$QSHARD" convert "$T/big" -o "$T/big.qshard" --progress none -T 1 --memory 64M \
		>"$T/out" 2>"$T/err" &
	pid=$!
	min=$((attempt <= 2 ? 100000 : 0))
	for _ in $(seq 1 1000); do
		[ -s "$T/big.qshard.partial" ] &&
			[ "$(stat -c %s "$T/big.qshard.partial" 2>/dev/null || echo 0)" -gt "$min" ] &&
			break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.01
	done
	kill -INT "$pid" 2>/dev/null
	wait "$pid"
	rc=$?
	[ "$rc" = 0 ] || break
	echo "attempt $attempt: the conversion finished before the signal; again, earlier"
done
[ "$rc" != 0 ] || fail "six conversions finished before SIGINT arrived: the resume path was not exercised"
[ "$rc" = 5 ] || fail "SIGINT: exit $rc, expected 5: $(cat "$T/err")"
expect_err "--resume"
[ -e "$T/big.qshard.partial" ] && [ ! -e "$T/big.qshard" ] || fail "SIGINT left no .partial"
# different options are refused, naming what differs
expect_exit 6 "$QSHARD" convert "$T/big" -o "$T/big.qshard" --progress none --memory 64M \
	--resume --scheme rtn:bits=3
expect_err "options"
# a changed input is refused, naming the line that changed
cp -r "$T/big" "$T/big2"
touch -d '2001-01-01' "$T/big2/model.safetensors"
expect_exit 6 "$QSHARD" convert "$T/big2" -o "$T/big.qshard" --progress none --memory 64M \
	--resume
expect_err "input differs from the interrupted run: was shard 'model.safetensors' size"
expect_exit 0 "$QSHARD" convert "$T/big" -o "$T/big.qshard" --progress none -T 2 \
	--memory 64M --resume
"$QSHARD" convert "$T/big" -o "$T/big-64m.qshard" --progress none --memory 64M >/dev/null ||
	fail "clean 64M run"
cmp -s "$T/big.qshard" "$T/big-64m.qshard" || fail "resumed file differs from a clean run"
expect_exit 0 "$QSHARD" verify "$T/big.qshard"
echo "PASS exit_codes"
