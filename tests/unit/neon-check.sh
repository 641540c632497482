#!/bin/sh
# neon-check.sh - the kernels on AArch64: arm/neon.c against ref.c bit for
# bit (tests/unit/neon_driver.c), and the ref kernels on AArch64 against the
# same ref kernels on this host (tests/unit/ref_digest.c prints a digest per
# kernel; both builds must print the same).  Every kernel file is compiled
# as its own unit with the flags Makefile.am gives the library (FP_CFLAGS),
# so a file that is only right with a flag or pragma it does not get is
# caught.  Runs natively on an AArch64 host (neon vs ref only) or else with
# aarch64-linux-gnu-gcc and qemu-aarch64 (packages gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross and qemu-user).  Exit 77 (skipped) when those are
# missing or cannot build and run a trivial static program.
set -eu

srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
# the build's floating-point flags: from make check, else from Makefile.am
fp=${FP_CFLAGS-$(sed -n 's/^FP_CFLAGS = //p' "$srcdir/Makefile.am")}
flags="-std=gnu11 -O2 $fp -Wall -Wextra -Werror -Wshadow \
-Wstrict-prototypes -Wmissing-prototypes -I$srcdir/src/kernels -I$srcdir/src/schemes"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qshard-neon.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

if [ "$(uname -m)" = aarch64 ]; then
	cc=${CC:-cc}
	run=
	static=
else
	cc=${AARCH64_CC:-aarch64-linux-gnu-gcc}
	run=qemu-aarch64
	static=-static
	if ! command -v "$cc" >/dev/null 2>&1 || ! command -v "$run" >/dev/null 2>&1; then
		echo "neon-check: no $cc or $run, skipped"
		exit 77
	fi
	# the tools exist; can they build and run a static program?
	printf '#include <stdio.h>\nint main(void) { puts("ok"); return 0; }\n' >"$tmp/probe.c"
	if ! "$cc" -static "$tmp/probe.c" -o "$tmp/probe" 2>"$tmp/probe.err" ||
	   [ "$("$run" "$tmp/probe")" != ok ]; then
		echo "neon-check: $cc cannot build or $run cannot run a static program, skipped:"
		cat "$tmp/probe.err"
		exit 77
	fi
fi

# build CC OUTDIR FILE...: each file its own object
build() {
	bcc=$1 out=$2
	shift 2
	mkdir -p "$out"
	for f in "$@"; do
		o=$out/$(echo "${f%.c}" | tr / _).o
		# shellcheck disable=SC2086
		"$bcc" $flags -c "$srcdir/$f" -o "$o"
	done
}
# the gguf instances each include gguf_impl.h, so they are units of their own
kernels="src/kernels/fp16.c src/kernels/ref.c src/kernels/ref_adpq.c \
src/kernels/ref_daq.c src/kernels/ref_claq.c src/kernels/gguf_pack.c src/kernels/ref_gguf.c"
# daq's incremental Hessian form is scheme code, but plain arithmetic that
# must give the same bits everywhere too: into ref_digest with the kernels
kernels="$kernels src/schemes/daq_qform.c"

# shellcheck disable=SC2086
build "$cc" "$tmp/arm" $kernels src/kernels/arm/neon.c src/kernels/arm/neon_adpq.c \
	src/kernels/arm/neon_gguf.c \
	tests/unit/neon_driver.c tests/unit/ref_digest.c
cd "$tmp/arm"
ref_objs="src_kernels_fp16.o src_kernels_ref.o src_kernels_ref_adpq.o \
src_kernels_ref_daq.o src_kernels_ref_claq.o src_kernels_gguf_pack.o src_kernels_ref_gguf.o \
src_schemes_daq_qform.o"
# shellcheck disable=SC2086
"$cc" $static $ref_objs src_kernels_arm_neon.o src_kernels_arm_neon_adpq.o \
	src_kernels_arm_neon_gguf.o \
	tests_unit_neon_driver.o -o neon_driver -lm
# shellcheck disable=SC2086
"$cc" $static $ref_objs tests_unit_ref_digest.o -o ref_digest -lm
$run ./neon_driver

if [ -n "$run" ]; then
	hcc=${CC_FOR_BUILD:-${HOST_CC:-cc}}
	# shellcheck disable=SC2086
	build "$hcc" "$tmp/host" $kernels tests/unit/ref_digest.c
	cd "$tmp/host"
	# shellcheck disable=SC2086
	"$hcc" $ref_objs tests_unit_ref_digest.o -o ref_digest -lm
	./ref_digest >"$tmp/host.txt"
	$run "$tmp/arm/ref_digest" >"$tmp/arm.txt"
	if ! cmp -s "$tmp/host.txt" "$tmp/arm.txt"; then
		echo "neon-check: the ref kernels differ between $(uname -m) and aarch64:" >&2
		diff "$tmp/host.txt" "$tmp/arm.txt" >&2 || true
		exit 1
	fi
	echo "neon-check: ref kernels identical on $(uname -m) and aarch64:"
	cat "$tmp/host.txt"
fi
