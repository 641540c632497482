#!/bin/sh
# neon-check.sh - arm/neon.c against ref.c, bit for bit: builds the
# stand-alone tests/unit/neon_driver.c (which compiles the kernels in
# directly) for AArch64 and runs it, natively on an AArch64 host or else
# with aarch64-linux-gnu-gcc and qemu-aarch64 (packages gcc-aarch64-linux-gnu
# and qemu-user).  Exit 77 (skipped) when neither is available.
set -eu

srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
flags="-std=gnu11 -O2 -ffp-contract=off -Wall -Wextra -Werror -Wshadow \
-Wstrict-prototypes -Wmissing-prototypes"

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
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qshard-neon.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# shellcheck disable=SC2086
# the gguf instances each include gguf_impl.h, so they are units of their own
$cc $flags $static -I"$srcdir/src/kernels" "$srcdir/tests/unit/neon_driver.c" \
	"$srcdir/src/kernels/gguf_pack.c" "$srcdir/src/kernels/ref_gguf.c" \
	"$srcdir/src/kernels/arm/neon_gguf.c" -o "$tmp/neon_driver" -lm
$run "$tmp/neon_driver"
