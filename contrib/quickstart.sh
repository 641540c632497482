#!/bin/sh
# quickstart.sh - the README's first command: install the dependencies
# (Debian/Ubuntu apt-get, and llama.cpp's prebuilt libraries from npm), build
# qshard in ./build, generate a sample checkpoint with mkckpt and convert,
# verify and inspect it.  Everything `make check` uses is installed here.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="build-essential autoconf automake libtool pkg-config \
liburing-dev libzstd-dev libxxhash-dev libopenblas-dev libcmocka-dev libjansson-dev \
python3 python3-numpy python3-regex python3-sentencepiece python3-torch valgrind clang libclang-rt-14-dev \
gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user debootstrap git \
slurmctld slurmd slurm-client munge"

if [ "${QSHARD_SKIP_DEPS:-0}" != 1 ]; then
	if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	# Slurm and munge (tests/cli/slurm.sh) must not start their daemons
	# here: the test starts its own on loopback.  policy-rc.d exiting 101
	# tells the packages' postinst scripts not to start services.
	policy_rc=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
		$SUDO chmod 755 /usr/sbin/policy-rc.d
		policy_rc=1
		# removed even when apt-get fails (set -e)
		trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
	# node and npm: the machine's own when it has them (a NodeSource nodejs
	# carries npm and conflicts with Debian's npm package), else Debian's
	if ! command -v npm >/dev/null 2>&1; then
		$SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
	fi
	if [ -n "$policy_rc" ]; then
		$SUDO rm -f /usr/sbin/policy-rc.d
		trap - EXIT
	fi
	# llama.cpp for the tests that compare against it (export_llama.sh,
	# ggml-check.sh): node-llama-cpp and its prebuilt CPU build (libllama,
	# libggml-base) from the npm registry, without the optional GPU builds.
	# Without it those tests skip, so a failing npm must not stop here.
	NLC=${NODE_LLAMA_CPP_DIR:-/opt/node-llama-cpp}
	if [ ! -f "$NLC/node_modules/node-llama-cpp/dist/index.js" ]; then
		$SUDO mkdir -p "$NLC" &&
			$SUDO npm install --silent --no-audit --no-fund --omit=optional --prefix "$NLC" \
				node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1 >/dev/null 2>&1 ||
			echo "quickstart: node-llama-cpp not installed; the llama.cpp tests will skip" >&2
	fi
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
