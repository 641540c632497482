# common.sh - shared by the benchmark scripts (sourced): locating the
# built binaries and a scratch folder on the disk under test.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$top/build}
QSHARD=${QSHARD:-$BUILD/qshard}
MKCKPT=${MKCKPT:-$BUILD/contrib/mkckpt/mkckpt}
# checkpoints are large: keep them on a real disk, not tmpfs
WORK=${BENCH_DIR:-$top/bench-data}
mkdir -p "$WORK"
for b in "$QSHARD" "$MKCKPT"; do
	[ -x "$b" ] || { echo "bench: '$b' not built (make first, or set BUILD=)" >&2; exit 2; }
done

drop_caches() {
	# only root can; without it the "cold" figures are warm ones
	if [ "$(id -u)" = 0 ]; then
		sync
		echo 3 >/proc/sys/vm/drop_caches
		return 0
	fi
	return 1
}

# mkckpt_once DIR ARGS...: generate unless DIR already has this exact recipe
mkckpt_once() {
	local dir=$1
	shift
	if [ "$(cat "$dir/.recipe" 2>/dev/null)" != "$*" ]; then
		rm -rf "$dir"
		"$MKCKPT" "$@" -o "$dir" >&2
		echo "$*" >"$dir/.recipe"
	fi
}

bytes_of() {
	du -cb "$@" | tail -n 1 | cut -f 1
}

now() {
	date +%s.%N
}

# calc EXPR: floating-point arithmetic without bc
calc() {
	awk "BEGIN { print $* }"
}

# run_in_cgroup NAME CMD...: runs CMD in a fresh memory cgroup limited to
# $limit bytes (the caller sets limit)
run_in_cgroup() {
	local name=$1
	shift
	local cg
	if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		cg=/sys/fs/cgroup/qshard-$name
		mkdir -p "$cg"
		echo "$limit" >"$cg/memory.max"
		echo 0 >"$cg/memory.swap.max" 2>/dev/null || true
	elif [ -d /sys/fs/cgroup/unified ] && grep -q memory /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
		cg=/sys/fs/cgroup/unified/qshard-$name
		mkdir -p "$cg"
		echo "$limit" >"$cg/memory.max"
	else
		cg=/sys/fs/cgroup/memory/qshard-$name
		mkdir -p "$cg"
		echo "$limit" >"$cg/memory.limit_in_bytes"
		echo "$limit" >"$cg/memory.memsw.limit_in_bytes" 2>/dev/null || true
	fi
	local rc=0
	bash -c 'echo $$ >"$1/cgroup.procs"; shift; exec "$@"' _ "$cg" "$@" || rc=$?
	rmdir "$cg" 2>/dev/null || true
	return $rc
}
