#!/bin/sh
# quickstart.sh - the README's first command: install the dependencies
# (Debian/Ubuntu apt-get), build qshard in ./build, generate a sample
# checkpoint with mkckpt and convert, verify and inspect it.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="build-essential autoconf automake libtool pkg-config \
liburing-dev libzstd-dev libxxhash-dev libopenblas-dev libcmocka-dev libjansson-dev \
python3 python3-numpy python3-torch valgrind clang libclang-rt-14-dev \
gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user debootstrap git"

if [ "${QSHARD_SKIP_DEPS:-0}" != 1 ]; then
	if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
fi

autoreconf -fi >/dev/null
mkdir -p build
cd build
[ -f Makefile ] || ../configure -q
make -j"$(nproc)" >/dev/null

echo "== generating a sample checkpoint (mkckpt --preset tiny)"
./contrib/mkckpt/mkckpt --preset tiny --seed 1 -o sample-ckpt
echo "== converting it"
./qshard convert sample-ckpt -o sample.qshard --force --progress plain
echo "== verifying"
./qshard verify sample.qshard
echo "== summary"
./qshard inspect sample.qshard | tail -n 1
