#!/bin/bash
# convert -> verify -> inspect -> unpack on mkckpt checkpoints: the unpacked
# tensors load with an independent safetensors reader and every weight is
# within half a quantization step; per-tensor scheme rules and --keep work;
# output bytes are identical for any -T and --io.
. "$top_srcdir/tests/cli/lib.sh"
need_numpy

# --- a sharded 2-layer 1b checkpoint, default scheme (rtn 4-bit g128)
"$MKCKPT" --preset 1b --layers 2 --shard-size 200M --seed 3 -o "$T/ck1b" >/dev/null ||
	fail "mkckpt"
expect_exit 0 "$QSHARD" convert "$T/ck1b" -o "$T/1b.qshard" --progress none -T 2
grep -q "bpw nominal" "$T/out" || fail "no summary line: $(cat "$T/out")"
[ ! -e "$T/1b.qshard.partial" ] || fail ".partial left after success"
expect_exit 0 "$QSHARD" verify "$T/1b.qshard"
expect_exit 0 "$QSHARD" verify "$T/1b.qshard" --source "$T/ck1b"
expect_exit 0 "$QSHARD" inspect "$T/1b.qshard" --json
"$PY" - "$T/out" "$T/ck1b" <<'PY' || fail "inspect json"
import json, sys
j = json.load(open(sys.argv[1]))
wm = json.load(open(sys.argv[2] + "/model.safetensors.index.json"))["weight_map"]
names = [t["name"] for t in j["tensors"]]
assert sorted(names) == sorted(wm), "tensor list differs from index.json"
assert j["kind"] == "qshard"
# rtn 4-bit g128: 4 + 32/128 bits per weight, metadata included
assert abs(j["bpw"] - 4.25) < 0.01, j["bpw"]
assert 0 < j["bpw_on_disk"] < j["bpw"] + 0.05, j["bpw_on_disk"]
for t in j["tensors"]:
    if len(t["shape"]) == 1:
        assert t["scheme"] == "raw", t
    else:
        assert t["scheme"] == "rtn:bits=4,group=128", t
print("inspect ok")
PY
expect_exit 0 "$QSHARD" unpack "$T/1b.qshard" -o "$T/un1b" --dtype f32
"$PY" "$top_srcdir/tests/cli/st_read.py" check-unpack "$T/ck1b" "$T/un1b" 4 128 ||
	fail "unpacked 1b checkpoint"
rm -rf "$T/un1b" "$T/1b.qshard"

# --- tiny, single file: per-tensor rules, --keep, 3 bits g64
"$MKCKPT" --preset tiny --seed 5 -o "$T/tiny" >/dev/null || fail "mkckpt tiny"
expect_exit 0 "$QSHARD" convert "$T/tiny/model.safetensors" -o "$T/t.qshard" --progress none \
	--scheme rtn:bits=3,group=64 --scheme 'lm_head=rtn:bits=8' --keep 'embed_tokens'
expect_exit 0 "$QSHARD" inspect "$T/t.qshard" --json
"$PY" - "$T/out" <<'PY' || fail "scheme rules"
import json, sys
j = json.load(open(sys.argv[1]))
s = {t["name"]: t["scheme"] for t in j["tensors"]}
assert s["lm_head.weight"] == "rtn:bits=8,group=128", s["lm_head.weight"]
assert s["model.embed_tokens.weight"] == "raw"
assert s["model.layers.0.mlp.up_proj.weight"] == "rtn:bits=3,group=64"
PY
expect_exit 0 "$QSHARD" unpack "$T/t.qshard" -o "$T/unt" --dtype f32
# lm_head is 8-bit: check the 3-bit tensors; the 8-bit one is stricter still
"$PY" "$top_srcdir/tests/cli/st_read.py" check-unpack "$T/tiny" "$T/unt" 3 64 embed_tokens ||
	fail "unpacked tiny checkpoint"
[ -f "$T/unt/model.safetensors" ] && [ ! -f "$T/unt/model.safetensors.index.json" ] ||
	fail "single-file source must unpack to a single file"

# --- identical bytes for every -T and --io
expect_exit 0 "$QSHARD" convert "$T/tiny" -o "$T/ref.qshard" -T 1 --io pread --progress none
for args in "-T 2 --io uring" "-T 4 --io mmap" "-T 3 --io pread --sync end" "-T 2"; do
	# shellcheck disable=SC2086
	expect_exit 0 "$QSHARD" convert "$T/tiny" -o "$T/x.qshard" $args --progress none
	cmp -s "$T/ref.qshard" "$T/x.qshard" || fail "output differs with $args"
done
echo "PASS convert_roundtrip"
