#!/bin/bash
# Hostile input beyond bad_input.sh: safetensors truncated at every length,
# malformed headers of every kind, hostile index.json files and folders,
# NaN/Inf, empty tensors, a broken config.json, and qshard files truncated
# at every length, bit-flipped in every structure and with absurd counts.
# Every case: the exit status qshard(1) documents (never a crash: < 128),
# a message naming the file (and tensor), no hang, no complete output.
. "$top_srcdir/tests/cli/lib.sh"
need_numpy
TO="timeout 20"
MEM="--memory 64M -T 1 --progress none"

# bad CODE FILE TENSOR CMD...: exit CODE, first stderr line names FILE and
# TENSOR ('-': none); the output file named by -o (if any) was not created
W=$T
bad() {
	local want=$1 file=$2 tensor=$3
	shift 3
	$TO "$@" >"$W/out" 2>"$W/err"
	local got=$?
	[ "$got" = "$want" ] || fail "exit $got, expected $want: $*
stderr: $(cat "$W/err")"
	[ -s "$W/err" ] || fail "no message: $*"
	local line
	line=$(grep -m1 "^qshard: " "$W/err")
	# the file is named by its path as given, ending in its name
	case $line in *"'$file'"* | *"/$file'"*) ;; *) fail "message does not name '$file': $* -> $(cat "$W/err")" ;; esac
	if [ "$tensor" != - ]; then
		case $line in *"'$tensor'"*) ;; *) fail "message does not name tensor '$tensor': $* -> $(cat "$W/err")" ;; esac
	fi
	local prev=
	for a in "$@"; do
		if [ "$prev" = -o ] && [ -e "$a" ]; then
			fail "output '$a' exists after a refused run: $*"
		fi
		prev=$a
	done
}

# ---------------------------------------------------------------- checkpoints
"$PY" - "$T" <<'PYEOF' || fail "generating checkpoints"
import json, os, struct, sys
T = sys.argv[1]
def hdr(h, pad=True):
    t = h if isinstance(h, bytes) else json.dumps(h).encode()
    if pad:
        t += b" " * ((8 - (8 + len(t)) % 8) % 8)
    return t
def st(tensors):
    h, data = {}, b""
    for name, dt, shape, raw in tensors:
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    t = hdr(h)
    return struct.pack("<Q", len(t)) + t + data
def raw_file(header, data=b""):
    t = hdr(header)
    return struct.pack("<Q", len(t)) + t + data
f32 = lambda v: struct.pack("<%df" % len(v), *v)
def w(case, blob, name="model.safetensors"):
    d = os.path.join(T, "ck", case)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)
    return d
GOOD = st([("a.weight", "F32", [4, 4], f32([0.5] * 16)), ("b.bias", "F32", [4], f32([1.0] * 4))])
w("good", GOOD)
with open(os.path.join(T, "good.safetensors"), "wb") as f:
    f.write(GOOD)
E = lambda dt, shape, offs: {"dtype": dt, "shape": shape, "data_offsets": offs}
cases = []   # (case, file, tensor)
def case(name, header, data=b"", tensor="-", rawhdr=None):
    if rawhdr is not None:
        w(name, struct.pack("<Q", len(rawhdr)) + rawhdr + data)
    else:
        w(name, raw_file(header, data))
    cases.append((name, "model.safetensors", tensor))
d64 = f32([0] * 16)
case("len_past_end", None, rawhdr=b"")
w("len_past_end", struct.pack("<Q", 9) + b"{}      ")
case("len_2e63", None, rawhdr=b"")
w("len_2e63", struct.pack("<Q", 1 << 63) + b"{}" + b" " * 30)
case("len_max", None, rawhdr=b"")
w("len_max", struct.pack("<Q", (1 << 64) - 1) + b"{}" + b" " * 30)
case("len_1e8_past_end", None, rawhdr=b"")
w("len_1e8_past_end", struct.pack("<Q", 100000000) + b"{}" + b" " * 30)
case("empty_header", None, rawhdr=b"")
case("truncated_json", None, rawhdr=b'{"a.weight": {"dtype": "F32", ')
case("binary_header", None, rawhdr=bytes(range(1, 64)))
case("header_null", None, rawhdr=b"null    ")
case("header_string", None, rawhdr=b'"model"')
case("header_array", None, rawhdr=b"[]")
case("dup_keys", None, d64 + d64, rawhdr=b'{"a.weight":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]},'
     b'"a.weight":{"dtype":"F32","shape":[4,4],"data_offsets":[64,128]}}')
case("dtype_number", {"a.weight": E(9, [4, 4], [0, 64])}, d64, "a.weight")
case("dtype_lower", {"a.weight": E("f32", [4, 4], [0, 64])}, d64, "a.weight")
case("dtype_empty", {"a.weight": E("", [4, 4], [0, 64])}, d64, "a.weight")
case("shape_string", {"a.weight": E("F32", "4,4", [0, 64])}, d64, "a.weight")
case("shape_negative", {"a.weight": E("F32", [-4, -4], [0, 64])}, d64, "a.weight")
case("shape_float", {"a.weight": E("F32", [4.0, 4], [0, 64])}, d64, "a.weight")
case("shape_9_dims", {"a.weight": E("F32", [1] * 7 + [4, 4], [0, 64])}, d64, "a.weight")
case("offsets_3", {"a.weight": E("F32", [4, 4], [0, 32, 64])}, d64, "a.weight")
case("offsets_strings", {"a.weight": E("F32", [4, 4], ["0", "64"])}, d64, "a.weight")
case("offsets_negative", {"a.weight": E("F32", [4, 4], [-64, 0])}, d64, "a.weight")
case("entry_not_object", {"a.weight": [1, 2]}, d64, "a.weight")
case("no_dtype", {"a.weight": {"shape": [4, 4], "data_offsets": [0, 64]}}, d64, "a.weight")
case("overflow_64", {"a.weight": E("F32", [1 << 32, 1 << 32], [0, 64])}, d64, "a.weight")
case("overflow_dtype", {"a.weight": E("F64", [1 << 62], [0, 64])}, d64, "a.weight")
case("overflow_then_zero", {"a.weight": E("F32", [1 << 62, 1 << 62, 0], [0, 0])}, b"", "a.weight")
case("offsets_reversed", {"a.weight": E("F32", [4, 4], [64, 0])}, d64, "a.weight")
case("offsets_same", {"a.weight": E("F32", [4, 4], [0, 64]), "b.weight": E("F32", [4, 4], [0, 64])}, d64, "b.weight")
case("hole_at_start", {"a.weight": E("F32", [4, 4], [16, 80])}, b"\0" * 80, "a.weight")
case("past_end_far", {"a.weight": E("F32", [4, 4], [1 << 40, (1 << 40) + 64])}, d64, "a.weight")
case("data_short_1", {"a.weight": E("F32", [4, 4], [0, 64])}, d64[:-1], "a.weight")
case("data_long_1", {"a.weight": E("F32", [4, 4], [0, 64])}, d64 + b"\0")
case("metadata_array", {"__metadata__": [1], "a.weight": E("F32", [4, 4], [0, 64])}, d64)
case("empty_name", {"": E("F32", [4, 4], [0, 64])}, d64)
# sharded folders
def sharded(name, wm, shards, index_text=None):
    d = os.path.join(T, "ck", name)
    os.makedirs(d, exist_ok=True)
    for fn, blob in shards.items():
        with open(os.path.join(d, fn), "wb") as f:
            f.write(blob)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        f.write(index_text if index_text is not None else json.dumps({"metadata": {}, "weight_map": wm}))
S1 = "model-00001-of-00002.safetensors"
S2 = "model-00002-of-00002.safetensors"
A = st([("a.weight", "F32", [4, 4], f32([0.5] * 16))])
B = st([("b.weight", "F32", [4], f32([1.0] * 4))])
sharded("ix_missing", {"a.weight": S1, "b.weight": S2}, {S1: A})
cases.append(("ix_missing", S2, "-", "1"))  # ENOENT: a system error, as for a missing input
sharded("ix_absent", {"a.weight": S1, "b.weight": S2, "c.weight": S2}, {S1: A, S2: B})
cases.append(("ix_absent", S2, "c.weight"))
sharded("ix_unlisted", {"a.weight": S1}, {S1: st([("a.weight", "F32", [4, 4], f32([0.5] * 16)), ("x", "F32", [1], f32([0]))])})
cases.append(("ix_unlisted", S1, "x"))
sharded("ix_two", {"a.weight": S1, "b.weight": S2}, {S1: A, S2: st([("a.weight", "F32", [4, 4], f32([0] * 16)), ("b.weight", "F32", [4], f32([1.0] * 4))])})
cases.append(("ix_two", S2, "a.weight"))
for nm, target in (("ix_dotdot", "../x.safetensors"), ("ix_abs", "/etc/passwd"), ("ix_dot", "."),
                   ("ix_subdir", "sub/model.safetensors"), ("ix_empty_name", "")):
    sharded(nm, {"a.weight": target}, {})
    cases.append((nm, "model.safetensors.index.json", "a.weight"))
sharded("ix_not_json", None, {S1: A}, index_text="{weight_map")
cases.append(("ix_not_json", "model.safetensors.index.json", "-"))
sharded("ix_no_map", None, {S1: A}, index_text='{"metadata": {}}')
cases.append(("ix_no_map", "model.safetensors.index.json", "-"))
sharded("ix_map_array", None, {S1: A}, index_text='{"weight_map": ["a"]}')
cases.append(("ix_map_array", "model.safetensors.index.json", "-"))
sharded("ix_shard_number", None, {S1: A}, index_text='{"weight_map": {"a.weight": 1}}')
cases.append(("ix_shard_number", "model.safetensors.index.json", "a.weight"))
with open(os.path.join(T, "cases"), "w") as f:
    for c in cases:
        f.write("\t".join(c if len(c) == 4 else c + ("3",)) + "\n")
PYEOF

n=0
while IFS=$'\t' read -r c file tensor code; do
	bad "$code" "$file" "$tensor" "$QSHARD" inspect "$T/ck/$c"
	bad "$code" "$file" "$tensor" "$QSHARD" convert "$T/ck/$c" -o "$T/$c.qshard" $MEM
	n=$((n + 1))
done <"$T/cases"

# a valid file truncated at every length: the length field, inside the
# header, inside the data
good=$T/good.safetensors
size=$(stat -c %s "$good")
mkdir -p "$T/trunc"
for ((len = 0; len < size; len++)); do
	head -c "$len" "$good" >"$T/trunc/model.safetensors"
	bad 3 model.safetensors - "$QSHARD" inspect "$T/trunc"
done
for len in 0 7 8 20 $((size - 1)); do
	head -c "$len" "$good" >"$T/trunc/model.safetensors"
	bad 3 model.safetensors - "$QSHARD" convert "$T/trunc" -o "$T/trunc.qshard" $MEM
done

# folders: empty, ambiguous (single file and shards), a symlink loop, an
# unreadable file
mkdir -p "$T/empty"
bad 3 "$T/empty" - "$QSHARD" convert "$T/empty" -o "$T/empty.qshard" $MEM
mkdir -p "$T/both"
cp "$good" "$T/both/model.safetensors"
cp "$T/ck/ix_absent/"* "$T/both/"
"$PY" -c 'import json,sys; json.dump({"weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}}, open(sys.argv[1], "w"))' \
	"$T/both/model.safetensors.index.json"
bad 3 "$T/both" - "$QSHARD" convert "$T/both" -o "$T/both.qshard" $MEM
mkdir -p "$T/loop"
ln -s model.safetensors "$T/loop/model.safetensors"
bad 1 model.safetensors - "$QSHARD" convert "$T/loop" -o "$T/loop.qshard" $MEM
ln -s self.safetensors "$T/self.safetensors"
bad 1 self.safetensors - "$QSHARD" inspect "$T/self.safetensors"
if [ "$(id -u)" != 0 ]; then
	mkdir -p "$T/unreadable"
	cp "$good" "$T/unreadable/model.safetensors"
	chmod 000 "$T/unreadable/model.safetensors"
	bad 1 model.safetensors - "$QSHARD" convert "$T/unreadable" -o "$T/unr.qshard" $MEM
	chmod 644 "$T/unreadable/model.safetensors"
fi

# ---------------------------------------------------- NaN/Inf, empty, config
"$PY" - "$T" <<'PYEOF' || fail "generating nonfinite/empty checkpoints"
import json, os, struct, sys
import numpy as np
T = sys.argv[1]
def st(path, tensors, config=None):
    os.makedirs(path, exist_ok=True)
    h, data = {}, b""
    for name, arr, dt in tensors:
        raw = arr.tobytes()
        h[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    t = json.dumps(h).encode()
    t += b" " * ((8 - (8 + len(t)) % 8) % 8)
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(t)) + t + data)
    if config is not None:
        with open(os.path.join(path, "config.json"), "w") as f:
            f.write(config)
rng = np.random.default_rng(7)
w = rng.standard_normal((4, 128)).astype(np.float16)
w.flat[5] = np.nan; w.flat[77] = np.inf; w.flat[300] = -np.inf
st(os.path.join(T, "nan"), [("ok.weight", rng.standard_normal((4, 128)).astype(np.float32), "F32"),
                            ("bad.weight", w, "F16")])
st(os.path.join(T, "zero"), [("e.weight", np.zeros((0, 16), np.float32), "F32"),
                             ("w.weight", rng.standard_normal((2, 128)).astype(np.float32), "F32"),
                             ("z.bias", np.zeros((0,), np.float32), "F32")])
st(os.path.join(T, "cfg"), [("w.weight", rng.standard_normal((2, 128)).astype(np.float32), "F32")],
   config="{not json at all")
PYEOF
bad 3 model.safetensors bad.weight "$QSHARD" convert "$T/nan" -o "$T/nan.qshard" $MEM
grep -qF "3 NaN/Inf" "$T/err" || fail "nan: count not given: $(cat "$T/err")"
expect_exit 0 $TO "$QSHARD" convert "$T/nan" -o "$T/nan.qshard" $MEM --allow-nonfinite --force
expect_exit 0 $TO "$QSHARD" verify "$T/nan.qshard"

expect_exit 0 $TO "$QSHARD" convert "$T/zero" -o "$T/zero.qshard" $MEM
expect_exit 0 $TO "$QSHARD" verify "$T/zero.qshard"
expect_exit 0 $TO "$QSHARD" unpack "$T/zero.qshard" -o "$T/zero-un"
"$PY" - "$T/zero-un/model.safetensors" <<'PYEOF' || fail "zero-size tensors did not round-trip"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
assert h["e.weight"]["shape"] == [0, 16], h
assert h["z.bias"]["shape"] == [0], h
assert h["e.weight"]["data_offsets"][0] == h["e.weight"]["data_offsets"][1]
assert h["w.weight"]["shape"] == [2, 128]
PYEOF

expect_exit 0 $TO "$QSHARD" convert "$T/cfg" -o "$T/cfg.qshard" $MEM
grep -q "config.json" "$T/err" || fail "config.json that is not JSON: no warning on stderr: $(cat "$T/err")"

# ---------------------------------------------------------------- qshard files
# a tiny checkpoint: one quantized tensor, one stored one
"$PY" - "$T/small" <<'PYEOF' || fail "generating the small checkpoint"
import json, os, struct, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
vals = [((i * 37) % 23 - 11) / 16.0 for i in range(64)]
t = [("w", "F32", [2, 32], struct.pack("<64f", *vals)), ("n", "F32", [2], struct.pack("<2f", 1, 2))]
h, data = {}, b""
for name, dt, shape, raw in t:
    h[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
j = json.dumps(h).encode()
j += b" " * ((8 - (8 + len(j)) % 8) % 8)
open(os.path.join(d, "model.safetensors"), "wb").write(struct.pack("<Q", len(j)) + j + data)
PYEOF
expect_exit 0 $TO "$QSHARD" convert "$T/small" -o "$T/s.qshard" $MEM --scheme rtn:bits=4,group=32 --keep '^n$'
qsize=$(stat -c %s "$T/s.qshard")
[ "$qsize" -lt 4096 ] || fail "small qshard file is $qsize bytes"

# every truncation point, in two workers (lengths of one parity each)
truncations() {
	local W=$T/qt$1 len
	mkdir -p "$W"
	for ((len = $1; len < qsize; len += 2)); do
		head -c "$len" "$T/s.qshard" >"$W/t.qshard"
		bad 4 t.qshard - "$QSHARD" verify "$W/t.qshard"
		bad 3 t.qshard - "$QSHARD" inspect "$W/t.qshard"
		bad 3 t.qshard - "$QSHARD" unpack "$W/t.qshard" -o "$W/un"
		[ ! -e "$W/un/model.safetensors" ] || fail "unpack of a truncated file left model.safetensors"
	done
}
truncations 0 &
p0=$!
truncations 1 || fail "truncations (odd lengths)"
wait "$p0" || fail "truncations (even lengths)"

# bit flips in every structure, and hand-made absurd values with valid
# checksums (python + libxxhash through ctypes)
mkdir -p "$T/flip"
"$PY" - "$T/s.qshard" "$T/flip" <<'PYEOF' || fail "generating damaged qshard files"
import ctypes, os, struct, sys
src, out = sys.argv[1], sys.argv[2]
xx = None
for lib in ("libxxhash.so.0", "libxxhash.so"):
    try:
        xx = ctypes.CDLL(lib)
        break
    except OSError:
        pass
b = bytearray(open(src, "rb").read())
frames = []   # (kind, offset, total size)
off = 0
while off + 8 <= len(b):
    m, l = struct.unpack_from("<II", b, off)
    if 0x184D2A50 <= m <= 0x184D2A5F:
        frames.append(({0x184D2A51: "header", 0x184D2A52: "record", 0x184D2A53: "index",
                        0x184D2A54: "trailer"}.get(m, "skip"), off, 8 + l))
        off += 8 + l
    elif m == 0xFD2FB528:
        # data frames: walk blocks (RFC 8878)
        fhd = b[off + 4]
        fcs_flag, single, dict_flag, csum = fhd >> 6, (fhd >> 5) & 1, fhd & 3, (fhd >> 2) & 1
        p = off + 5 + (0 if single else 1) + [0, 1, 2, 4][dict_flag] + \
            [1 if single else 0, 2, 4, 8][fcs_flag]
        while True:
            bh = b[p] | b[p + 1] << 8 | b[p + 2] << 16
            last, btype, bsize = bh & 1, (bh >> 1) & 3, bh >> 3
            p += 3 + (1 if btype == 1 else bsize)
            if last:
                break
        p += 4 * csum
        frames.append(("data", off, p - off))
        off = p
    else:
        sys.exit("unexpected bytes at %d" % off)
kinds = [f[0] for f in frames]
assert kinds[0] == "header" and kinds[-1] == "trailer" and "index" in kinds and "record" in kinds, kinds
n = 0
def emit(tag, blob):
    global n
    with open(os.path.join(out, "%05d-%s.qshard" % (n, tag)), "wb") as f:
        f.write(blob)
    n += 1
def flip_all(kind, off, size, step_bits):
    for bit in range(0, size * 8, step_bits):
        c = bytearray(b)
        c[off + bit // 8] ^= 1 << (bit % 8)
        emit(kind, c)
for kind, off, size in frames:
    if kind == "header" or kind == "trailer":
        flip_all(kind, off, size, 1)
first_record = [f for f in frames if f[0] == "record"][0]
flip_all("record", first_record[1], first_record[2], 1)
index = [f for f in frames if f[0] == "index"][0]
flip_all("index", index[1], index[2], 1)
for kind, off, size in frames:
    if kind == "data":
        for i in range(0, size, 7):
            c = bytearray(b)
            c[off + i] ^= 0x10
            emit("data", c)
# absurd values behind valid checksums
if xx is not None:
    xx.XXH3_64bits.restype = ctypes.c_uint64
    xx.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    def seal(c, off, size):   # frame at off, total size
        content = bytes(c[off + 8: off + size - 8])
        struct.pack_into("<Q", c, off + size - 8, xx.XXH3_64bits(content, len(content)))
    tr_off = len(b) - 56
    ix_off, ix_size = index[1], index[2]
    def trailer(**kw):
        c = bytearray(b)
        fields = dict(zip(("index_offset", "index_size", "file_size", "tensor_count"),
                          struct.unpack_from("<QQQQ", c, tr_off + 16)))
        fields.update(kw)
        struct.pack_into("<QQQQ", c, tr_off + 16, fields["index_offset"], fields["index_size"],
                         fields["file_size"], fields["tensor_count"])
        seal(c, tr_off, 56)
        return c
    emit("abs-trailer-index-past-end", trailer(index_offset=len(b) + 100))
    emit("abs-trailer-index-huge", trailer(index_offset=0, index_size=len(b) - 56))
    emit("abs-trailer-count", trailer(tensor_count=1 << 40))
    emit("abs-trailer-filesize", trailer(file_size=1 << 62))
    emit("abs-trailer-index-1g", trailer(index_offset=len(b) - 56 - 100, index_size=1 << 30))
    def index_patch(rel, fmt, val, tag):
        c = bytearray(b)
        struct.pack_into(fmt, c, ix_off + rel, val)
        seal(c, ix_off, ix_size)
        emit(tag, c)
    index_patch(12, "<I", 0xFFFFFFFF, "abs-index-count")
    index_patch(4, "<I", 0xFFFFFFF0, "abs-index-frame-length")
    # first index entry: u64 record_offset, u32 length, then record content
    index_patch(16, "<Q", 1 << 60, "abs-index-record-offset")
    index_patch(16, "<Q", len(b) - 10, "abs-index-record-past-end")
    index_patch(24, "<I", 0xFFFFFFFF, "abs-index-record-length")
    # inside the first record content (index copy): fix its own checksum too
    rec = ix_off + 8 + 8 + 12
    rlen = struct.unpack_from("<I", b, ix_off + 8 + 8 + 8)[0]
    def rec_patch(rel_fn, tag):
        c = bytearray(b)
        rel_fn(c, rec)
        content = bytes(c[rec: rec + rlen - 8])
        struct.pack_into("<Q", c, rec + rlen - 8, xx.XXH3_64bits(content, len(content)))
        seal(c, ix_off, ix_size)
        emit(tag, c)
    nlen = struct.unpack_from("<H", b, rec + 4)[0]
    slen = struct.unpack_from("<H", b, rec + 6 + nlen)[0]
    p_dtype = rec + 8 + nlen + slen
    ndim = b[p_dtype + 1]
    p_scheme = p_dtype + 4 + 8 * ndim
    sclen = struct.unpack_from("<H", b, p_scheme)[0]
    p_nch = p_scheme + 2 + sclen + 8
    p_chunk = p_nch + 4
    rec_patch(lambda c, r: struct.pack_into("<H", c, r + 4, 0xFFFF), "abs-record-name-length")
    rec_patch(lambda c, r: struct.pack_into("<B", c, p_dtype, 200), "abs-record-dtype")
    rec_patch(lambda c, r: struct.pack_into("<B", c, p_dtype + 1, 200), "abs-record-ndim")
    rec_patch(lambda c, r: struct.pack_into("<Q", c, p_dtype + 4, 1 << 62), "abs-record-shape")
    rec_patch(lambda c, r: struct.pack_into("<I", c, p_nch, 0xFFFFFFFF), "abs-record-nchunks")
    rec_patch(lambda c, r: struct.pack_into("<Q", c, p_chunk, len(b) + 4096), "abs-chunk-offset")
    rec_patch(lambda c, r: struct.pack_into("<Q", c, p_chunk + 8, 1 << 63), "abs-chunk-frame-size")
    rec_patch(lambda c, r: struct.pack_into("<Q", c, p_chunk + 16, 1 << 40), "abs-chunk-payload-1t")
    rec_patch(lambda c, r: struct.pack_into("<Q", c, p_chunk + 16, (1 << 31) + 7), "abs-chunk-payload-2g")
    rec_patch(lambda c, r: struct.pack_into("<Q", c, p_chunk + 32, 1 << 62), "abs-chunk-rows")
    rec_patch(lambda c, r: struct.pack_into("<H", c, rec + 6, 0) or None, "abs-record-shard-shift")
    # the shard name made to escape the output folder (same length)
    sh_off = rec + 8 + nlen
    def escape(c, r):
        name = b"../" + b"x" * (slen - 3) if slen >= 4 else b"/" * slen
        c[sh_off: sh_off + slen] = name
    rec_patch(escape, "abs-record-shard-escape")
    # a header string length beyond the frame
    h_off = frames[0][1]
    c = bytearray(b)
    struct.pack_into("<I", c, h_off + 8 + 4 + 4 + 16, 0xFFFFFFFF)
    seal(c, h_off, frames[0][2])
    emit("abs-header-creator-length", c)
    c = bytearray(b)
    struct.pack_into("<I", c, h_off + 4, 0xFFFFFF00)
    emit("abs-header-frame-length", c)
print(n)
PYEOF
damaged() {
	local W=$T/fw$1 i=0 f tag
	mkdir -p "$W"
	for f in "$T/flip"/*.qshard; do
		i=$((i + 1))
		[ $((i % 2)) = "$1" ] || continue
		tag=${f##*/}
		bad 4 "$tag" - "$QSHARD" verify "$f"
		case $tag in
		*-abs-*)
			bad 3 "$tag" - "$QSHARD" inspect "$f"
			bad 3 "$tag" - "$QSHARD" unpack "$f" -o "$W/un"
			[ ! -e "$T/x" ] && [ ! -e "$W/x" ] || fail "$tag: unpack wrote outside its folder"
			;;
		esac
	done
}
damaged 0 &
p0=$!
damaged 1 || fail "damaged files (odd)"
wait "$p0" || fail "damaged files (even)"
nf=$(ls "$T/flip" | wc -l)
echo "PASS hostile_input ($n checkpoints, $size + $qsize truncations, $nf damaged qshard files)"
