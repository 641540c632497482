#!/bin/bash
# Case 11 of issue 12: memory and descriptors stay bounded whatever the
# checkpoint's shape.  A 90 MB safetensors header converts within a 64 MiB
# window (it is parsed as a stream, never loaded whole); 500 shards convert
# and verify under `ulimit -n 64` (shards are opened one at a time).
. "$top_srcdir/tests/cli/lib.sh"
[ -x /usr/bin/time ] || { echo "SKIP: /usr/bin/time (GNU time) not installed"; exit 77; }

"$PY" - "$T" <<'EOF' || fail "cannot write the checkpoints"
import json, os, struct, sys
T = sys.argv[1]
data = b"".join(struct.pack("<H", 0x3F80 + (i % 97)) for i in range(8 * 128))
def write(path, hdr):
    h = hdr.encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)
entry = '"w":{"dtype":"BF16","shape":[8,128],"data_offsets":[0,%d]' % len(data)
# 90 MB in a field qshard ignores, and 90 MB of padding
write(T + "/junk.safetensors", "{" + entry + ',"note":"' + "x" * 90_000_000 + '"}}')
write(T + "/pad.safetensors", "{" + entry + "}}" + " " * 90_000_000)
# 90 MB of __metadata__: refused (it would be carried), not loaded
write(T + "/meta.safetensors", '{"__metadata__":{"blob":"' + "y" * 90_000_000 + '"},' + entry + "}}")
os.mkdir(T + "/many")
wm = {}
for i in range(500):
    name = "model-%05d-of-00500.safetensors" % (i + 1)
    write(T + "/many/" + name, '{"layer.%d.weight":{"dtype":"BF16","shape":[8,128],"data_offsets":[0,%d]}}' % (i, len(data)))
    wm["layer.%d.weight" % i] = name
json.dump({"metadata": {}, "weight_map": wm}, open(T + "/many/model.safetensors.index.json", "w"))
EOF

# --- 11a. peak RSS within --memory 64M for a 90 MB header
for f in junk pad; do
	/usr/bin/time -f '%M' -o "$T/rss" "$QSHARD" convert "$T/$f.safetensors" -o "$T/$f.qs" \
		--memory 64M -T 1 --progress none >"$T/out" 2>"$T/err" ||
		fail "$f: convert failed: $(cat "$T/err")"
	rss=$(tail -n 1 "$T/rss")
	[ "$rss" -lt $((64 * 1024)) ] || fail "$f: peak RSS $rss KiB for a 90 MB header, --memory 64M"
	expect_exit 0 "$QSHARD" verify "$T/$f.qs" --source "$T/$f.safetensors"
done
/usr/bin/time -f '%M' -o "$T/rss" "$QSHARD" convert "$T/meta.safetensors" -o "$T/meta.qs" \
	--memory 64M -T 1 --progress none >"$T/out" 2>"$T/err"
rc=$?
[ $rc = 3 ] || fail "meta: exit $rc, expected 3: $(cat "$T/err")"
grep -q "'__metadata__' holds more than" "$T/err" || fail "meta: $(cat "$T/err")"
rss=$(tail -n 1 "$T/rss")
[ "$rss" -lt $((64 * 1024)) ] || fail "meta: peak RSS $rss KiB refusing a 90 MB metadata"

# --- 11b. 500 shards with 64 descriptors, every backend, and verify
for io in uring pread mmap; do
	(ulimit -n 64 && exec "$QSHARD" convert "$T/many" -o "$T/many-$io.qs" --io $io -T 1 \
		--memory 64M --progress none) >"$T/out" 2>"$T/err" ||
		fail "500 shards, ulimit -n 64, --io $io: $(cat "$T/err")"
done
cmp -s "$T/many-uring.qs" "$T/many-pread.qs" && cmp -s "$T/many-uring.qs" "$T/many-mmap.qs" ||
	fail "500 shards: backends disagree"
(ulimit -n 64 && exec "$QSHARD" verify "$T/many-uring.qs" --source "$T/many") >"$T/out" 2>"$T/err" ||
	fail "500 shards: verify --source under ulimit -n 64: $(cat "$T/err")"
exit 0
