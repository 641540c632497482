#!/bin/bash
# convert --part K/N + merge: for every N from 1 to 7, converting each K and
# merging gives the bytes of one convert with the same options, for rtn,
# adpq and gptq with a Hessian (tensors split between parts included).
# Parts are ordinary files: verify accepts them; --plan-only lists what
# each holds and the lists cover the plan once.  A part resumed with another
# K/N is refused; merge --remove-parts deletes the parts, plain merge not.
. "$top_srcdir/tests/cli/lib.sh"
need_numpy

# a small checkpoint (vocab 1024) cut into many chunks by a small window
"$MKCKPT" --preset tiny --layers 1 --vocab 1024 -o "$T/ck" >/dev/null || fail mkckpt
"$PY" "$top_srcdir/tests/cli/mkhessian.py" "$T/ck/model.safetensors" "$T/hessian.safetensors" ||
	fail "writing Hessians"

# (32M: with a quarter of --memory set aside for zstd contexts, gptq on
# 1280 columns needs 25 MiB)
common=(--memory 32M -T 1 --progress none --sync end)
check_scheme() {
	local tag=$1
	shift
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/$tag.qshard" "${common[@]}" "$@"
	local split_seen=0
	for n in 1 2 3 4 5 6 7; do
		rm -f "$T/$tag".part-*
		for k in $(seq 1 "$n"); do
			expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/$tag.qshard" "${common[@]}" \
				"$@" --part "$k/$n"
			[ -f "$T/$tag.part-$k-of-$n.qshard" ] || fail "$tag: no part $k of $n"
		done
		expect_exit 0 "$QSHARD" merge "$T/m-$tag.qshard" "$T/$tag".part-*-of-"$n".qshard
		grep -q "(0 split" "$T/out" || split_seen=1
		cmp "$T/m-$tag.qshard" "$T/$tag.qshard" ||
			fail "$tag: merge of $n parts differs from one convert"
		# merge keeps the parts unless asked
		[ -f "$T/$tag.part-1-of-$n.qshard" ] || fail "$tag: merge removed a part"
		rm -f "$T/m-$tag.qshard"
	done
	[ "$split_seen" = 1 ] || fail "$tag: no tensor was ever split between parts"
	# a part is an ordinary file to verify (with --source too: only the
	# piece that ends a split tensor carries its source checksum) and
	# inspect, but never unpacked
	for k in 1 4 7; do
		expect_exit 0 "$QSHARD" verify "$T/$tag.part-$k-of-7.qshard" --source "$T/ck"
	done
	expect_exit 0 "$QSHARD" inspect "$T/$tag.part-4-of-7.qshard"
	expect_exit 2 "$QSHARD" unpack "$T/$tag.part-4-of-7.qshard" -o "$T/u"
	expect_err "part 4 of 7 of a split conversion: join the parts with 'qshard merge' first"
	echo "ok: $tag, 1..7 parts"
}
check_scheme rtn --scheme rtn:bits=4
check_scheme adpq --scheme adpq:bits=3
check_scheme gptq --scheme gptq:bits=3 --hessian "$T/hessian.safetensors"

# inputs whose tensors read a companion (FP8 block scales, MXFP4 scales)
# and stacked experts: split pieces still join to one convert's bytes
check_inputs() {
	local tag=$1
	shift
	"$MKCKPT" --preset tiny --layers 1 --vocab 1024 "$@" -o "$T/ck-$tag" >/dev/null ||
		fail "mkckpt $tag"
	expect_exit 0 "$QSHARD" convert "$T/ck-$tag" -o "$T/$tag.qshard" "${common[@]}"
	local split_seen=0
	for n in 2 3 5; do
		for k in $(seq 1 "$n"); do
			expect_exit 0 "$QSHARD" convert "$T/ck-$tag" -o "$T/$tag.qshard" \
				"${common[@]}" --part "$k/$n"
		done
		expect_exit 0 "$QSHARD" merge "$T/m-$tag.qshard" "$T/$tag".part-*-of-"$n".qshard
		grep -q "(0 split" "$T/out" || split_seen=1
		cmp "$T/m-$tag.qshard" "$T/$tag.qshard" || fail "$tag: merge of $n parts differs"
		expect_exit 0 "$QSHARD" verify "$T/m-$tag.qshard" --source "$T/ck-$tag"
		rm -f "$T/m-$tag.qshard"
	done
	[ "$split_seen" = 1 ] || fail "$tag: no tensor was ever split between parts"
	echo "ok: $tag"
}
check_inputs fp8 --dtype fp8 --moe 4
check_inputs mxfp4 --moe 3 --fused-experts --mxfp4

# --plan-only: the parts' listings cover each tensor's chunks once, in order
for k in 1 2 3 4 5; do
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/g.qshard" "${common[@]}" \
		--scheme gptq:bits=3 --hessian "$T/hessian.safetensors" \
		--plan-only --part "$k/5" --json
	cp "$T/out" "$T/plan-$k.json"
done
[ ! -e "$T/g.part-1-of-5.qshard" ] && [ ! -e "$T/g.part-1-of-5.qshard.partial" ] ||
	fail "--plan-only wrote a file"
"$PY" - "$T" <<'PY' || fail "--plan-only listings do not cover the plan"
import json, sys
t = sys.argv[1]
seen, shares = {}, []
for k in range(1, 6):
    p = json.load(open(f"{t}/plan-{k}.json"))
    assert p["part"] == k and p["parts"] == 5, p
    assert p["path"].endswith(f"g.part-{k}-of-5.qshard")
    shares.append(p["share"])
    for e in p["tensors"]:
        b, end = e["chunks"]
        got = seen.setdefault(e["name"], [])
        assert (got[-1] if got else 0) == b, (e["name"], got, b)
        got.append(end)
        assert e["second_order"] == e["scheme"].startswith("gptq")
nchunks = p["chunks_total"]
assert len(seen) == p["tensors_total"], (len(seen), p["tensors_total"])
print("shares", [round(s, 3) for s in shares])
# over 1 only by the rows a split tensor's last piece rereads
assert 1 - 1e-9 <= sum(shares) < 1.1, shares
assert max(shares) < 0.35, shares
PY
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/g.qshard" "${common[@]}" --plan-only --part 2/3
grep -q "^part 2 of 3: " "$T/out" || fail "--plan-only table lacks its summary"
expect_exit 2 "$QSHARD" convert "$T/ck" -o "$T/g.qshard" --part 0/3
expect_err "--part must be K/N"
expect_exit 2 "$QSHARD" convert "$T/ck" -o "$T/g.qshard" --part 4/3
expect_exit 2 "$QSHARD" convert "$T/ck" -o "$T/g.qshard" --json

# a part's .partial is not another part's: resume with another K/N refused
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/x.qshard" "${common[@]}" --part 1/2
mv "$T/x.part-1-of-2.qshard" "$T/x.part-2-of-2.qshard.partial"
expect_exit 6 "$QSHARD" convert "$T/ck" -o "$T/x.qshard" "${common[@]}" --part 2/2 --resume
expect_err "options differ"
rm -f "$T"/x.*

# --remove-parts
for k in 1 2; do
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/r.qshard" "${common[@]}" --part "$k/2"
done
expect_exit 0 "$QSHARD" merge "$T/r.qshard" "$T"/r.part-*-of-2.qshard --remove-parts
[ -e "$T/r.part-1-of-2.qshard" ] && fail "--remove-parts kept a part"
cmp -s "$T/r.qshard" "$T/rtn.qshard" && fail "default options should differ from rtn:bits=4"
expect_exit 0 "$QSHARD" verify "$T/r.qshard"
echo "PASS parts"
