#!/bin/sh
# CLI test of contrib/mkckpt: layout, determinism, sharding, per-tensor
# independence from --layers/--shard-size, dtype conversion and exit codes.
# Run by automake with top_builddir/top_srcdir set; exit 0 pass, 1 fail,
# 77 skip.

top_builddir=${top_builddir:-.}
MKCKPT=$top_builddir/contrib/mkckpt/mkckpt

if [ ! -x "$MKCKPT" ]; then
	echo "SKIP: $MKCKPT not built"
	exit 77
fi

PY=
if [ -x /usr/bin/python3 ]; then
	PY=/usr/bin/python3
elif command -v python3 >/dev/null 2>&1; then
	PY=python3
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/mkckpt-test.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
trap 'exit 1' HUP INT TERM

failures=0
fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

# run EXPECTED_STATUS ARGS...: runs mkckpt, output in $T/out and $T/err.
run() {
	want=$1
	shift
	"$MKCKPT" "$@" >"$T/out" 2>"$T/err"
	got=$?
	if [ "$got" -ne "$want" ]; then
		fail "mkckpt $* exited $got, expected $want"
		sed 's/^/  stderr: /' "$T/err"
		return 1
	fi
	return 0
}

# Python helper: safetensors checks that need JSON parsing.
st_py() {
	"$PY" - "$@" <<'EOF'
import json, os, struct, sys

SIZES = {"BF16": 2, "F16": 2, "F32": 4}

def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        raw = f.read(n)
    h = json.loads(raw)
    assert (8 + n) % 8 == 0, f"{path}: header not padded to 8"
    assert raw.rstrip(b" ") == raw.rstrip(), f"{path}: bad padding"
    assert h.pop("__metadata__") == {"format": "pt"}, f"{path}: metadata"
    end = 0
    for name, t in h.items():
        s, e = t["data_offsets"]
        assert s == end, f"{path}: {name} not contiguous"
        count = 1
        for d in t["shape"]:
            count *= d
        assert e - s == count * SIZES[t["dtype"]], f"{path}: {name} size"
        end = e
    assert os.path.getsize(path) == 8 + n + end, f"{path}: file size"
    return h, 8 + n

def tensor_bytes(path, name):
    h, base = header(path)
    s, e = h[name]["data_offsets"]
    with open(path, "rb") as f:
        f.seek(base + s)
        return f.read(e - s)

def find(d, name):
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".safetensors") and name in header(os.path.join(d, fn))[0]:
            return os.path.join(d, fn)
    raise AssertionError(f"{d}: no tensor {name}")

cmd = sys.argv[1]
if cmd == "check-single":
    # DIR NTENSORS [tied]
    d, n = sys.argv[2], int(sys.argv[3])
    h, _ = header(os.path.join(d, "model.safetensors"))
    assert len(h) == n, f"{len(h)} tensors, expected {n}"
    names = list(h)
    assert names[0] == "model.embed_tokens.weight", names[0]
    tied = len(sys.argv) > 4
    assert ("lm_head.weight" in h) != tied, "lm_head presence"
    assert names[-1] == ("model.norm.weight" if tied else "lm_head.weight")
    cfg = json.load(open(os.path.join(d, "config.json")))
    assert cfg["tie_word_embeddings"] == tied
elif cmd == "check-index":
    # DIR LAYERS: the index names every tensor of every shard
    d, layers = sys.argv[2], int(sys.argv[3])
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    wm = idx["weight_map"]
    shards = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    k = len(shards)
    assert k >= 2, f"only {k} shard(s)"
    assert shards == [f"model-{i:05d}-of-{k:05d}.safetensors"
                      for i in range(1, k + 1)], shards
    seen, total = {}, 0
    for fn in shards:
        h, _ = header(os.path.join(d, fn))
        for name, t in h.items():
            seen[name] = fn
            total += t["data_offsets"][1] - t["data_offsets"][0]
    assert seen == wm, "weight_map differs from the shards' contents"
    assert idx["metadata"]["total_size"] == total, "total_size"
    assert len(wm) == 2 + 9 * layers, f"{len(wm)} tensors"
    cfg = json.load(open(os.path.join(d, "config.json")))
    assert cfg["num_hidden_layers"] == layers
    assert cfg["model_type"] == "llama"
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert "lm_head.weight" not in wm, "1b ties embeddings"
elif cmd == "same-tensor":
    # DIR_A DIR_B NAME...
    for name in sys.argv[4:]:
        a = tensor_bytes(find(sys.argv[2], name), name)
        b = tensor_bytes(find(sys.argv[3], name), name)
        assert a == b, f"{name} differs"
elif cmd == "dtypes":
    # DIR_F32 DIR_BF16 DIR_F16: bf16/f16 are RNE of the f32 values
    import numpy as np
    fa = os.path.join(sys.argv[2], "model.safetensors")
    fb = os.path.join(sys.argv[3], "model.safetensors")
    fh = os.path.join(sys.argv[4], "model.safetensors")
    for name in header(fa)[0]:
        f = np.frombuffer(tensor_bytes(fa, name), "<u4").astype(np.uint64)
        rne = ((f + 0x7FFF + ((f >> 16) & 1)) >> 16).astype("<u2")
        assert rne.tobytes() == tensor_bytes(fb, name), f"bf16 {name}"
        h = f.astype(np.uint32).view(np.float32).astype("<f2")
        assert h.tobytes() == tensor_bytes(fh, name), f"f16 {name}"
elif cmd == "stats":
    # DIR: weight statistics look like a trained Llama
    import numpy as np
    p = os.path.join(sys.argv[2], "model.safetensors")
    def load(name):
        u = np.frombuffer(tensor_bytes(p, name), "<u2").astype(np.uint32)
        return (u << 16).view(np.float32).astype(np.float64)
    for name in ["model.layers.2.self_attn.q_proj.weight",
                 "model.layers.5.self_attn.v_proj.weight",
                 "model.layers.7.mlp.down_proj.weight", "lm_head.weight"]:
        h, _ = header(p)
        w = load(name).reshape(h[name]["shape"])
        s = w.std()
        assert 0.01 <= s <= 0.05, f"{name}: std {s}"
        kurt = ((w - w.mean()) ** 4).mean() / s ** 4
        assert kurt > 6, f"{name}: kurtosis {kurt}"
        rs = w.std(axis=1)
        assert 0.2 < rs.std() / rs.mean() < 0.6, f"{name}: row spread"
        body = np.median(np.abs(w), axis=1, keepdims=True) / 0.6745
        sal = (np.abs(w) > 10 * body).mean()
        assert 0.0005 < sal < 0.003, f"{name}: salient fraction {sal}"
        col = np.median(np.abs(w), axis=0)
        hot = (col > 2.5 * np.median(col)).sum()
        assert 1 <= hot <= 0.02 * w.shape[1], f"{name}: {hot} hot columns"
    e = load("model.embed_tokens.weight")
    assert 0.015 < e.std() < 0.025, f"embedding std {e.std()}"
    n = load("model.layers.0.input_layernorm.weight")
    assert 0.5 < np.median(n) < 1.5, f"norm median {np.median(n)}"
else:
    sys.exit(f"unknown command {cmd}")
EOF
}

# --- tiny, single file --------------------------------------------------
if run 0 -o "$T/a"; then
	[ -f "$T/a/config.json" ] || fail "tiny: no config.json"
	[ -f "$T/a/model.safetensors" ] || fail "tiny: no model.safetensors"
	[ -e "$T/a/model.safetensors.index.json" ] && fail "tiny: unexpected index"
	size=$(wc -c <"$T/a/model.safetensors")
	if [ "$size" -lt 40000000 ] || [ "$size" -gt 60000000 ]; then
		fail "tiny: model.safetensors is $size bytes, expected 40-60 MB"
	fi
	grep -q "^mkckpt: wrote $T/a (preset tiny, 8 layers, 75 tensors, 0\.05 GB in 1 file(s))\$" "$T/out" ||
		fail "tiny: unexpected summary: $(cat "$T/out")"
	grep -q '"torch_dtype": "bfloat16"' "$T/a/config.json" ||
		fail "tiny: config.json torch_dtype"
fi

# Determinism: same seed (explicit default) gives the same bytes; another
# seed gives other bytes.
if run 0 --seed 1 -o "$T/b"; then
	cmp -s "$T/a/model.safetensors" "$T/b/model.safetensors" ||
		fail "same seed: model.safetensors differs"
	cmp -s "$T/a/config.json" "$T/b/config.json" ||
		fail "same seed: config.json differs"
fi
if run 0 --seed 2 -o "$T/c"; then
	cmp -s "$T/a/model.safetensors" "$T/c/model.safetensors" &&
		fail "different seed: identical model.safetensors"
fi

# Existing files are overwritten (truncated), and a stale index of a
# sharded layout does not survive a single-file run.
mkdir -p "$T/d"
head -c 70000000 /dev/zero >"$T/d/model.safetensors"
echo '{}' >"$T/d/model.safetensors.index.json"
if run 0 -o "$T/d"; then
	cmp -s "$T/a/model.safetensors" "$T/d/model.safetensors" ||
		fail "overwrite: model.safetensors differs from a fresh run"
	[ -e "$T/d/model.safetensors.index.json" ] &&
		fail "overwrite: stale index left behind"
fi
rm -rf "$T/b" "$T/c" "$T/d"

# Nested output directories are created.
run 0 --layers 1 -o "$T/x/y/z" && [ ! -f "$T/x/y/z/model.safetensors" ] &&
	fail "nested -o: no model.safetensors"
rm -rf "$T/x"

# --- bad arguments: exit 2, a message, nothing written -------------------
for args in "--preset huge -o $T/bad" "--dtype f8 -o $T/bad" \
	"--layers 0 -o $T/bad" "--layers 9 -o $T/bad" "--layers 2x -o $T/bad" \
	"--shard-size 10X -o $T/bad" "--shard-size -5 -o $T/bad" \
	"--seed -1 -o $T/bad" "--bogus -o $T/bad" "--layers" "" \
	"-o $T/bad extra" "--shard-size 99999999999999999999G -o $T/bad"; do
	# shellcheck disable=SC2086
	if run 2 $args; then
		grep -q '^mkckpt: ' "$T/err" ||
			fail "mkckpt $args: no 'mkckpt: ' message on stderr"
		[ -s "$T/out" ] && fail "mkckpt $args: wrote to stdout"
	fi
	[ -e "$T/bad" ] && fail "mkckpt $args: created the output directory"
	rm -rf "$T/bad"
done
if run 0 --help; then
	grep -q '^usage: mkckpt' "$T/out" || fail "--help: no usage on stdout"
fi

# --- I/O errors: exit 1 naming the file -----------------------------------
: >"$T/file"
if run 1 -o "$T/file/sub"; then
	grep -q "^mkckpt: '$T/file" "$T/err" ||
		fail "unwritable -o: message does not name the path: $(cat "$T/err")"
fi
# A file size limit makes write() fail with EFBIG as ENOSPC would.
(
	trap '' XFSZ
	ulimit -f 2048
	exec "$MKCKPT" -o "$T/full"
) >"$T/out" 2>"$T/err"
st=$?
if [ "$st" -ne 1 ]; then
	fail "write failure: exit $st, expected 1"
elif ! grep -q "^mkckpt: '$T/full/model.safetensors': " "$T/err"; then
	fail "write failure: message does not name the file: $(cat "$T/err")"
fi
rm -rf "$T/full"

if [ -z "$PY" ]; then
	echo "note: python3 not found, header/shard checks not run"
	[ "$failures" -eq 0 ] || exit 1
	exit 0
fi

# --- header structure ------------------------------------------------------
st_py check-single "$T/a" 75 || fail "tiny: header checks"
if run 0 --tie-embeddings --layers 3 -o "$T/tied"; then
	st_py check-single "$T/tied" 29 tied || fail "--tie-embeddings: header checks"
fi
rm -rf "$T/tied"

# --- sharding --------------------------------------------------------------
if run 0 --preset 1b --layers 2 --shard-size 100M -o "$T/s"; then
	st_py check-index "$T/s" 2 || fail "1b sharded: index checks"
fi
rm -rf "$T/s"

# A tensor's bytes depend on neither --layers nor --shard-size.
if run 0 --layers 2 -o "$T/l2" && run 0 --layers 3 --shard-size 3M -o "$T/l3"; then
	[ -f "$T/l3/model.safetensors.index.json" ] || fail "--shard-size 3M: no index"
	st_py same-tensor "$T/l2" "$T/l3" model.embed_tokens.weight \
		model.layers.1.self_attn.q_proj.weight \
		model.layers.1.mlp.down_proj.weight \
		model.layers.1.post_attention_layernorm.weight model.norm.weight \
		lm_head.weight || fail "tensor bytes depend on --layers/--shard-size"
	st_py same-tensor "$T/a" "$T/l3" model.layers.2.mlp.up_proj.weight ||
		fail "tensor bytes depend on --layers/--shard-size"
fi
rm -rf "$T/l2" "$T/l3"

# --sparse: the same headers and file sizes, the data a hole (plans read
# headers only, so a 70b checkpoint costs no 140 GB)
if run 0 --sparse -o "$T/sp"; then
	full=$(wc -c <"$T/a/model.safetensors")
	sparse=$(wc -c <"$T/sp/model.safetensors")
	[ "$full" -eq "$sparse" ] || fail "--sparse: $sparse bytes, the full file has $full"
	hlen=$(od -An -tu8 -N8 "$T/a/model.safetensors" | tr -d ' ')
	cmp -s -n $((hlen + 8)) "$T/a/model.safetensors" "$T/sp/model.safetensors" ||
		fail "--sparse: header differs from the full checkpoint's"
	used=$(du -k "$T/sp/model.safetensors" | cut -f1)
	[ "$used" -lt 1024 ] || fail "--sparse: $used KiB on disk, expected a hole"
fi
rm -rf "$T/sp"

# --- dtypes and statistics (numpy) ------------------------------------------
if "$PY" -c 'import numpy' 2>/dev/null; then
	if run 0 --dtype f32 -o "$T/f32" && run 0 --dtype f16 -o "$T/f16"; then
		grep -q '"torch_dtype": "float32"' "$T/f32/config.json" ||
			fail "f32: config.json torch_dtype"
		st_py dtypes "$T/f32" "$T/a" "$T/f16" ||
			fail "bf16/f16 are not round-to-nearest-even of f32"
	fi
	st_py stats "$T/a" || fail "weight statistics"
else
	echo "note: numpy not found, dtype and statistics checks not run"
fi

[ "$failures" -eq 0 ] || exit 1
exit 0
