#!/bin/bash
# The same input and options give the same bytes for any -T, --io, SIMD
# level (QSHARD_SIMD) and OpenBLAS thread count (OPENBLAS_NUM_THREADS),
# for every scheme (qshard-convert(1), DESIGN.md); the zstd contexts share
# their fixed quarter of --memory when fewer than -T fit; and a run resumed
# with another -T gives the bytes of a clean run, while one resumed with
# another --memory (another chunking) is refused.
#
# The checkpoint is tiny with a 16384-token vocabulary: its embedding (16
# MiB of bf16) is cut into several chunks at --memory 256M, and in fewer at
# 1G, so a chunking that depended on -T or --level would show.  Schemes
# apply to the layers (the embedding stays rtn); daq gets importance and
# Hessians (it uses the Hessian: 10 LDRA steps keep that quick), claq and
# gptq/athena Hessians, from tests/cli/mkstats.py.
#
# DETERMINISM=slice (make check, about a minute): per scheme three
# (-T, --io) pairs at --memory 256M --level 7, plus rtn at 1G level 1.
# DETERMINISM=full (make check-determinism): every scheme x -T 1/2/3/8/36 x
# --io uring/pread/mmap x --memory 256M/1G x --level 1/7.  In both, the SIMD
# levels this machine has and OPENBLAS_NUM_THREADS=1/2/8 rotate over the
# runs, so each meets many combinations; every run of a (scheme, memory,
# level) must match its first byte for byte.
. "$top_srcdir/tests/cli/lib.sh"
need_numpy
mode=${DETERMINISM:-slice}

"$MKCKPT" --preset tiny --layers 1 --vocab 16384 -o "$T/ck" >/dev/null || fail mkckpt
"$PY" "$top_srcdir/tests/cli/mkstats.py" "$T/ck/model.safetensors" "$T" || fail mkstats

# the SIMD levels this machine runs (dispatch.c's test, as far as
# /proc/cpuinfo shows it; test_simd checks that QSHARD_SIMD is honoured)
simd=(ref)
case "$(uname -m)" in
x86_64)
	flags=$(grep -m1 '^flags' /proc/cpuinfo)
	case "$flags" in *" avx2 "*) case "$flags" in *" fma "*) case "$flags" in
		*" f16c "*) simd+=(avx2) ;; esac ;; esac ;; esac
	case "$flags" in *" avx512f "*) case "$flags" in *" avx512bw "*) case "$flags" in
		*" avx512vl "*) simd+=(avx512) ;; esac ;; esac ;; esac ;;
aarch64) simd+=(neon) ;;
esac
blas=(1 2 8)
stats=(--importance "$T/importance.safetensors" --hessian "$T/hessian.safetensors")
schemes=("rtn:bits=3" "adpq" "daq:format=fp4,iters=10" "daq:format=int,bits=3,iters=10" "claq" "gptq:bits=3"
	 "athena:bits=3,search=2")

runs=0
# group SCHEME MEMORY LEVEL "T:IO"...: every run must give the first's bytes
group() {
	local scheme=$1 memory=$2 level=$3 first=
	shift 3
	for pair in "$@"; do
		local t=${pair%%:*} io=${pair#*:}
		local s=${simd[runs % ${#simd[@]}]} b=${blas[runs % ${#blas[@]}]}
		local out="$T/run.qshard" what="$scheme --memory $memory --level $level -T $t --io $io QSHARD_SIMD=$s OPENBLAS_NUM_THREADS=$b"
		runs=$((runs + 1))
		QSHARD_SIMD=$s OPENBLAS_NUM_THREADS=$b expect_exit 0 "$QSHARD" convert "$T/ck" \
			-o "$out" --force --progress none --scheme "layers=$scheme" "${stats[@]}" \
			--memory "$memory" --level "$level" -T "$t" --io "$io"
		if [ -z "$first" ]; then
			first=$what
			mv "$out" "$T/first.qshard"
		elif ! cmp -s "$out" "$T/first.qshard"; then
			fail "bytes differ: [$what] vs [$first]"
		fi
	done
	rm -f "$T/first.qshard" "$T/run.qshard"
}

if [ "$mode" = full ]; then
	pairs=()
	for t in 1 2 3 8 36; do
		for io in uring pread mmap; do
			pairs+=("$t:$io")
		done
	done
	for scheme in "${schemes[@]}"; do
		for memory in 256M 1G; do
			for level in 1 7; do
				group "$scheme" "$memory" "$level" "${pairs[@]}"
			done
		done
	done
else
	for scheme in "${schemes[@]}"; do
		group "$scheme" 256M 7 1:uring 36:pread 3:mmap
	done
	group rtn:bits=3 1G 1 8:mmap 2:uring
fi

# Compression contexts have their own quarter of --memory: with room for
# fewer than -T, the workers share the ones that fit (same bytes); with
# room for none, a clear error and the figure that is enough.
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/z1.qshard" --progress none --memory 48M \
	--level 15 -T 1
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/z8.qshard" --progress none --memory 48M \
	--level 15 -T 8
cmp -s "$T/z1.qshard" "$T/z8.qshard" || fail "--memory 48M --level 15: -T 8 differs from -T 1"
expect_exit 7 "$QSHARD" convert "$T/ck" -o "$T/z.qshard" --progress none --memory 16M \
	--level 15 -T 1
expect_err "too small for --level 15: one compression context needs"
[ ! -e "$T/z.qshard.partial" ] || fail "a refused --level left a .partial"

# the embedding really is cut differently at 256M and 1G (else the matrix
# could not see a chunking that depends on -T)
chunks() {
	"$QSHARD" inspect "$1" --json | "$PY" -c '
import json, sys
for t in json.load(sys.stdin)["tensors"]:
    if t["name"] == "model.embed_tokens.weight":
        print(t["chunks"])'
}
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/m256.qshard" --progress none --memory 256M -T 1
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/m1g.qshard" --progress none --memory 1G -T 1
c256=$(chunks "$T/m256.qshard") c1g=$(chunks "$T/m1g.qshard")
[ -n "$c256" ] && [ "$c256" -gt 1 ] && [ "$c256" != "$c1g" ] ||
	fail "embedding chunks: $c256 at 256M, $c1g at 1G; the test needs them to differ"

# resume: a .partial cut after a few tensors, continued with another -T,
# gives the clean run's bytes; continued with another --memory it is refused
size=$(stat -c %s "$T/m256.qshard")
head -c $((size / 2)) "$T/m256.qshard" >"$T/r.qshard.partial"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/r.qshard" --progress none --memory 256M -T 8 \
	--resume
cmp -s "$T/r.qshard" "$T/m256.qshard" || fail "resumed at -T 8: bytes differ from a clean -T 1 run"
head -c $((size / 2)) "$T/m256.qshard" >"$T/r.qshard.partial"
rm -f "$T/r.qshard"
expect_exit 6 "$QSHARD" convert "$T/ck" -o "$T/r.qshard" --progress none --memory 1G -T 1 --resume
expect_err "options"
echo "PASS determinism ($mode: $runs runs, SIMD ${simd[*]}, embedding $c256 chunks at 256M, $c1g at 1G)"
