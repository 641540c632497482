#!/bin/bash
# run-fuzz.sh [HARNESS...] - builds the libFuzzer harnesses with clang
# (-fsanitize=fuzzer,address,undefined) from the library sources and runs
# each for FUZZ_SECONDS (default 600), in parallel.  Any crash, leak, timeout
# or out-of-memory input is copied into tests/fuzz/regress/HARNESS/ (where
# `make check` replays it forever) and the script exits 1.
#
# Environment: FUZZ_SECONDS, BUILDDIR (a configured build folder; default
# top_builddir or .), FUZZ_WORK (default BUILDDIR/fuzz-work: the grown
# corpus and artifacts; the seeds in the source tree are never written),
# CLANG (default clang), FUZZ_JOBS (harnesses run at once; default all).
set -u
srcdir=$(cd "$(dirname "$0")/../.." && pwd)
builddir=$(cd "${BUILDDIR:-${top_builddir:-.}}" && pwd)
seconds=${FUZZ_SECONDS:-600}
work=${FUZZ_WORK:-$builddir/fuzz-work}
cc=${CLANG:-clang}
harnesses=${*:-st_header st_index container importance hessian gguf_meta}
jobs=${FUZZ_JOBS:-0}

die() {
	echo "run-fuzz: $*" >&2
	exit 2
}
[ -f "$builddir/config.h" ] || die "'$builddir' is not a configured build folder (no config.h); set BUILDDIR"
command -v "$cc" >/dev/null || die "'$cc' not found (libFuzzer needs clang)"

max_len() {
	case $1 in
	st_header) echo 65536 ;;   # headers with many tensors; JSON is verbose
	st_index) echo 32768 ;;
	container) echo 65536 ;;   # the seed files are a few KB
	importance) echo 32768 ;;  # the largest seed holds 4096 values (16 KB)
	hessian) echo 32768 ;;     # the largest seed is a 2048-value diagonal (8 KB)
	gguf_meta) echo 16384 ;;   # the seeds are about 1 KB
	*) echo 4096 ;;
	esac
}

# The library's source list and link flags, from the build's own Makefile,
# so this never falls behind Makefile.am.
mkdir -p "$work/obj" || die "cannot create '$work'"
# The library's sources, flags and link libraries, from the build's own
# Makefile, so this never falls behind Makefile.am.  Convenience libraries
# in libqshard_core's LIBADD (the SIMD kernels) are compiled with their own
# flags, minus warnings-as-errors and the build's sanitizers.
mkvar() {
	printf 'qs-fuzz-print:\n' >"$work/print.mk"
	for v in "$@"; do
		printf '\t@echo "qs-fuzz: $(%s)"\n' "$v" >>"$work/print.mk"
	done
	# make may first regenerate its Makefile and say so: keep our lines only
	make -s -C "$builddir" -f Makefile -f "$work/print.mk" qs-fuzz-print >"$work/print.out" ||
		die "cannot read $* from '$builddir/Makefile'"
	sed -n 's/^qs-fuzz: //p' "$work/print.out"
}
vars=$(mkvar libqshard_core_la_SOURCES DEP_LIBS AM_CPPFLAGS libqshard_core_la_LIBADD) || exit 2
sources=$(echo "$vars" | sed -n 1p)
libs=$(echo "$vars" | sed -n 2p)
cppflags=$(echo "$vars" | sed -n 3p)
convlibs=$(echo "$vars" | sed -n 4p)

cflags="-g -O1 -std=gnu11 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
	-fno-sanitize-recover=undefined $cppflags"
objs=
compile() {  # source extra-flags...
	local s=$1 o
	shift
	case $s in *.c) ;; *) return 0 ;; esac
	o=$work/obj/$(echo "${s%.c}" | tr / _).o
	if [ ! -e "$o" ] || [ "$srcdir/$s" -nt "$o" ] || [ "$builddir/config.h" -nt "$o" ]; then
		# shellcheck disable=SC2086
		$cc $cflags "$@" -c "$srcdir/$s" -o "$o" || die "compiling $s failed"
	fi
	objs="$objs $o"
}
for s in $sources; do
	compile "$s"
done
for l in $convlibs; do
	case $l in *.la) ;; *) continue ;; esac
	canon=$(echo "$l" | tr -c 'a-zA-Z0-9_\n' _)
	lv=$(mkvar "${canon}_SOURCES" "${canon}_CFLAGS") || exit 2
	lflags=
	for f in $(echo "$lv" | sed -n 2p); do
		case $f in -Werror* | -fsanitize* | -fno-sanitize*) ;; *) lflags="$lflags $f" ;; esac
	done
	for s in $(echo "$lv" | sed -n 1p); do
		# shellcheck disable=SC2086
		compile "$s" $lflags
	done
done
for h in $harnesses; do
	[ -f "$srcdir/tests/fuzz/fuzz_$h.c" ] || die "no harness '$h'"
	# shellcheck disable=SC2086
	$cc $cflags -fsanitize=fuzzer "$srcdir/tests/fuzz/fuzz_$h.c" $objs $libs -pthread \
		-o "$work/fuzz_$h" || die "linking fuzz_$h failed"
done

run_one() {
	local h=$1
	mkdir -p "$work/corpus/$h" "$work/artifacts/$h"
	echo "run-fuzz: $h for ${seconds}s (log: $work/$h.log)"
	# corpus dirs: the grown corpus first (libFuzzer writes there), then
	# the seeds and every regression input
	"$work/fuzz_$h" -max_len="$(max_len "$h")" -rss_limit_mb=2048 -timeout=10 \
		-max_total_time="$seconds" -print_final_stats=1 \
		-artifact_prefix="$work/artifacts/$h/" \
		"$work/corpus/$h" "$srcdir/tests/fuzz/corpus/$h" \
		"$srcdir/tests/fuzz/regress/$h" >"$work/$h.log" 2>&1
	local rc=$?
	grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$work/$h.log" |
		sed "s/^/run-fuzz: $h: /"
	return $rc
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
declare -A pids
running=0
for h in $harnesses; do
	mkdir -p "$srcdir/tests/fuzz/regress/$h"
	run_one "$h" &
	pids[$h]=$!
	running=$((running + 1))
	if [ "$jobs" -gt 0 ] && [ "$running" -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
done
status=0
for h in $harnesses; do
	wait "${pids[$h]}"
	rc=$?
	found=0
	for a in "$work/artifacts/$h"/crash-* "$work/artifacts/$h"/leak-* \
		"$work/artifacts/$h"/timeout-* "$work/artifacts/$h"/oom-*; do
		[ -e "$a" ] || continue
		cp "$a" "$srcdir/tests/fuzz/regress/$h/" || status=1
		echo "run-fuzz: $h: found $(basename "$a") -> tests/fuzz/regress/$h/"
		found=1
	done
	if [ "$found" = 1 ] || [ "$rc" != 0 ]; then
		echo "run-fuzz: $h: FAILED (exit $rc); see $work/$h.log" >&2
		status=1
	fi
done
exit $status
