#!/bin/bash
# A part killed with SIGKILL at random moments (mid-tensor, mid-frame, mid-
# record) and resumed until it completes still merges to the bytes of one
# convert: each part is its own journal like any output.  The seed is
# printed; QSHARD_TEST_SEED=N reruns the same kill times.
. "$top_srcdir/tests/cli/lib.sh"

seed=${QSHARD_TEST_SEED:-$$}
echo "seed $seed"
RANDOM=$seed
"$MKCKPT" --preset tiny --layers 3 --vocab 1024 -o "$T/ck" >/dev/null || fail mkckpt
opts=(--memory 24M -T 1 --progress none --scheme adpq:bits=3,search=4)
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/one.qshard" "${opts[@]}"

n=3 resumed_partial=0
for k in $(seq 1 $n); do
	part=$T/p.part-$k-of-$n.qshard
	# a part that completed before any kill landed is converted again with
	# shorter delays, so the test never depends on how busy the machine is
	for try in 1 2 3 4 5 6; do
	before=$resumed_partial
	kills=0
	rm -f "$part" "$part.partial"
	maxdelay=$((50 / try))
	for attempt in $(seq 1 30); do
		args=()
		if [ -e "$part.partial" ]; then
			args=(--resume)
			resumed_partial=$((resumed_partial + 1))
		fi
		"$QSHARD" convert "$T/ck" -o "$T/p.qshard" "${opts[@]}" --part "$k/$n" \
			"${args[@]}" >"$T/out" 2>"$T/err" &
		pid=$!
		if [ "$kills" -lt 4 ]; then
			# once the run has its .partial, 0 to 49 ms more: a part
			# takes a few tenths of a second here
			for _ in $(seq 1 500); do
				[ -e "$part.partial" ] || ! kill -0 "$pid" 2>/dev/null && break
				sleep 0.01
			done
			sleep "$(printf "0.%03d" $((RANDOM % maxdelay)))"
			kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
		fi
		wait "$pid" 2>/dev/null
		rc=$?
		[ "$rc" = 0 ] && break
		[ "$rc" = 137 ] || fail "part $k: exit $rc: $(cat "$T/err")"
	done
	[ -f "$part" ] || fail "part $k never completed"
	[ "$resumed_partial" -gt "$before" ] && break
	done
	expect_exit 0 "$QSHARD" verify "$part"
done
[ "$resumed_partial" -gt 0 ] || fail "no kill landed mid-run (seed $seed)"
expect_exit 0 "$QSHARD" merge "$T/m.qshard" "$T"/p.part-*-of-$n.qshard
cmp "$T/m.qshard" "$T/one.qshard" || fail "resumed parts merge to other bytes (seed $seed)"
echo "PASS parts_resume ($resumed_partial resumes of a killed part)"
