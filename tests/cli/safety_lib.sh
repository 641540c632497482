# safety_lib.sh - helpers of the data-safety tests (sourced after lib.sh).

# start_stopped WATCH CMD...: runs CMD in the background and freezes it
# (SIGSTOP) the moment the path WATCH appears, so a second writer, a
# changing source or a truncation can be placed while it is mid-run.  Sets
# PID.  Retries a few times when CMD finished before it could be caught;
# returns 1 when it never could be.
start_stopped() {
	local watch=$1 tries=0 i
	shift
	while [ $tries -lt 10 ]; do
		tries=$((tries + 1))
		rm -f "$watch"
		"$@" >"$T/bg.out" 2>"$T/bg.err" &
		PID=$!
		i=0
		while [ ! -e "$watch" ] && [ $i -lt 200000 ]; do
			i=$((i + 1))
		done
		kill -STOP "$PID" 2>/dev/null || { wait "$PID"; continue; }
		# caught mid-run only if the watched file is still there
		[ -e "$watch" ] && return 0
		kill -CONT "$PID"
		wait "$PID"
	done
	return 1
}

# resume_bg: lets the frozen command go on; sets BGRC to its exit code
resume_bg() {
	kill -CONT "$PID"
	wait "$PID"
	BGRC=$?
}

# sums DIR: one line per file under DIR (name, type, size and content hash)
sums() {
	(cd "$1" && find . -mindepth 1 -printf '%p %y %s\n' | sort &&
		find . -type f -print0 | sort -z | xargs -0r cksum) 2>/dev/null
}
