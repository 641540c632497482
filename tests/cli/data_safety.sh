#!/bin/bash
# The data-safety contract of convert (issue 12): one writer per output,
# a source that moves is an error, an input is never the output, links are
# never written through, resume compares every input that shapes the
# output, -o DIR is refused before reading.  Each block is one numbered
# case of the issue; unpack's cases are in data_safety_unpack.sh.
. "$top_srcdir/tests/cli/lib.sh"
. "$top_srcdir/tests/cli/safety_lib.sh"

"$MKCKPT" --preset tiny --layers 4 -o "$T/ck" >/dev/null || fail mkckpt
"$MKCKPT" --preset tiny --layers 4 --shard-size 8M -o "$T/sh" >/dev/null || fail mkckpt
cp -a "$T/ck" "$T/ck.orig"
cp -a "$T/sh" "$T/sh.orig"
# small window and one worker: the reader cannot run far ahead
OPTS="-T 1 --memory 24M --progress none"
shard="$T/ck/model.safetensors"
size_mb=$(($(stat -c %s "$shard") >> 20))
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/clean.qs" $OPTS
expect_exit 0 "$QSHARD" convert "$T/sh" -o "$T/clean-sh.qs" $OPTS

# --- 1. a second writer (--force, --resume or plain) is refused while the
# first runs, with exit 6 naming its pid; the first finishes a good file
case_1() {
	start_stopped "$T/c.qs.partial" "$QSHARD" convert "$T/ck" -o "$T/c.qs" $OPTS --io pread ||
		fail "case 1: convert could not be caught mid-run"
	hold_until_locked "$T/c.qs.partial" || fail "case 1: convert finished before it locked"
	expect_exit 6 "$QSHARD" convert "$T/ck" -o "$T/c.qs" $OPTS --force
	expect_err "pid $PID"
	expect_exit 6 "$QSHARD" convert "$T/ck" -o "$T/c.qs" $OPTS --resume
	expect_err "pid $PID"
	expect_exit 6 "$QSHARD" convert "$T/ck" -o "$T/c.qs" $OPTS
	resume_bg
	[ "$BGRC" = 0 ] || fail "case 1: first writer exit $BGRC: $(cat "$T/bg.err")"
	expect_exit 0 "$QSHARD" verify "$T/c.qs"
	cmp -s "$T/c.qs" "$T/clean.qs" || fail "case 1: first writer's output differs from a clean run"
	# the kernel drops the lock of a killed writer: no stale lock
	start_stopped "$T/k.qs.partial" "$QSHARD" convert "$T/ck" -o "$T/k.qs" $OPTS ||
		fail "case 1: convert could not be caught mid-run"
	kill -9 "$PID"
	kill -CONT "$PID" 2>/dev/null
	wait "$PID" 2>/dev/null
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/k.qs" $OPTS --resume
	cmp -s "$T/k.qs" "$T/clean.qs" || fail "case 1: resume after kill -9 differs"
}

# --- 2. a shard that changes while (or before) it is read stops the run
# with exit 3 naming it; the .partial keeps only tensors read from the
# unchanged file: restored, --resume gives the clean bytes
case_2() {
	for where in ahead behind; do
		rm -f "$T/m.qs" "$T/m.qs.partial"
		start_stopped "$T/m.qs.partial" "$QSHARD" convert "$T/ck" -o "$T/m.qs" $OPTS --io pread ||
			fail "case 2: convert could not be caught mid-run"
		# bytes of the same file elsewhere: the values stay finite
		if [ $where = ahead ]; then seek=$((size_mb - 2)); else seek=1; fi
		dd if="$shard" of="$shard" bs=1M skip=3 seek=$seek count=1 conv=notrunc status=none
		resume_bg
		[ "$BGRC" = 3 ] || fail "case 2 ($where): exit $BGRC, expected 3: $(cat "$T/bg.err")"
		grep -q "'model.safetensors': changed while being read" "$T/bg.err" ||
			fail "case 2 ($where): shard not named: $(cat "$T/bg.err")"
		[ ! -e "$T/m.qs" ] || fail "case 2 ($where): a final output exists"
		cp -p "$T/ck.orig/model.safetensors" "$shard"
		expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/m.qs" $OPTS --resume
		cmp -s "$T/m.qs" "$T/clean.qs" || fail "case 2 ($where): resumed output differs from a clean run"
	done
	# rewritten before the reader reaches it: the last shard, right at the start
	last="$T/sh/model-00004-of-00004.safetensors"
	for io in pread uring; do
		rm -f "$T/n.qs" "$T/n.qs.partial"
		start_stopped "$T/n.qs.partial" "$QSHARD" convert "$T/sh" -o "$T/n.qs" $OPTS --io $io ||
			fail "case 2: convert could not be caught mid-run"
		dd if="$last" of="$last" bs=64K skip=20 seek=10 count=4 conv=notrunc status=none
		resume_bg
		[ "$BGRC" = 3 ] || fail "case 2 (before, $io): exit $BGRC, expected 3: $(cat "$T/bg.err")"
		grep -q "'model-00004-of-00004.safetensors': changed" "$T/bg.err" ||
			fail "case 2 (before, $io): shard not named: $(cat "$T/bg.err")"
		cp -p "$T/sh.orig/model-00004-of-00004.safetensors" "$last"
		expect_exit 0 "$QSHARD" convert "$T/sh" -o "$T/n.qs" $OPTS --resume --io $io
		cmp -s "$T/n.qs" "$T/clean-sh.qs" || fail "case 2 (before, $io): resumed output differs"
	done
}

# --- 3. the output (or its .partial) is never an input, by any name
case_3() {
	cp "$T/ck/model.safetensors" "$T/m.safetensors"
	expect_exit 2 "$QSHARD" convert "$T/m.safetensors" -o "$T/m.safetensors" $OPTS
	expect_err "refusing to overwrite an input"
	ln "$T/m.safetensors" "$T/hard.qs"
	expect_exit 2 "$QSHARD" convert "$T/m.safetensors" -o "$T/hard.qs" $OPTS
	expect_err "hard link"
	ln "$T/m.safetensors" "$T/hard2.qs.partial"
	expect_exit 2 "$QSHARD" convert "$T/m.safetensors" -o "$T/hard2.qs" $OPTS --force
	expect_exit 2 "$QSHARD" convert "$T/ck" -o "$T/ck/config.json" $OPTS
	cmp -s "$T/m.safetensors" "$T/ck.orig/model.safetensors" || fail "case 3: input changed"
	cmp -s "$T/ck/config.json" "$T/ck.orig/config.json" || fail "case 3: config.json changed"
}

# --- 5. resume compares the carried files: a changed config.json or
# tokenizer file is named and refused
case_5() {
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/r.qs" $OPTS
	mv "$T/r.qs" "$T/r.qs.partial"
	printf '{"model_type": "llama", "edited": true}\n' >"$T/ck/config.json"
	expect_exit 6 "$QSHARD" convert "$T/ck" -o "$T/r.qs" $OPTS --resume
	expect_err "config.json"
	cp -p "$T/ck.orig/config.json" "$T/ck/config.json"
	printf '{"version": "1.0"}\n' >"$T/ck/tokenizer.json"
	expect_exit 6 "$QSHARD" convert "$T/ck" -o "$T/r.qs" $OPTS --resume
	expect_err "tokenizer.json"
	cp -p "$T/ck.orig/tokenizer.json" "$T/ck/tokenizer.json"
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/r.qs" $OPTS --resume
	cmp -s "$T/r.qs" "$T/clean.qs" || fail "case 5: resume of unchanged inputs differs"
}

# --- 7. OUT.partial a planted link: refused, never written through
case_7() {
	echo victim >"$T/victim"
	ln -s "$T/victim" "$T/l.qs.partial"
	expect_exit 1 "$QSHARD" convert "$T/ck" -o "$T/l.qs" $OPTS --force
	expect_err "symbolic link"
	expect_exit 1 "$QSHARD" convert "$T/ck" -o "$T/l.qs" $OPTS --resume
	expect_err "symbolic link"
	[ "$(cat "$T/victim")" = victim ] || fail "case 7: written through the link"
	[ ! -e "$T/l.qs" ] && [ -L "$T/l.qs.partial" ] || fail "case 7: output or link changed"
}

# --- 8. --io mmap and a shard truncated during the run: exit 3 naming it
case_8() {
	for io in mmap pread; do
		rm -f "$T/t.qs" "$T/t.qs.partial"
		start_stopped "$T/t.qs.partial" "$QSHARD" convert "$T/ck" -o "$T/t.qs" $OPTS --io $io ||
			fail "case 8: convert could not be caught mid-run"
		truncate -s $(((size_mb / 2) << 20)) "$shard"
		resume_bg
		[ "$BGRC" = 3 ] || fail "case 8 ($io): exit $BGRC, expected 3: $(cat "$T/bg.err")"
		grep -q "'model.safetensors'" "$T/bg.err" || fail "case 8 ($io): shard not named"
		cp -p "$T/ck.orig/model.safetensors" "$shard"
	done
}

# --- 10. -o naming a folder is refused before anything is read
case_10() {
	mkdir "$T/outdir"
	expect_exit 2 "$QSHARD" convert "$T/ck" -o "$T/outdir" $OPTS
	expect_err "is a folder"
	[ ! -e "$T/outdir.partial" ] || fail "case 10: a .partial was written"
	expect_exit 2 "$QSHARD" convert "$T/ck" -o "$T/newdir/" $OPTS
}

# DS_CASES picks cases (e.g. to check one against an older build)
for c in ${DS_CASES:-1 2 3 5 7 8 10}; do
	case_$c
done
exit 0
