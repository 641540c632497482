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

# hold_until_locked PATH: the command frozen by start_stopped may have been
# caught between creating PATH and taking its lock (flock); lets it run in
# tiny steps until the lock is held.  Testing with flock -n is safe: the
# command is stopped, so it never meets our probe's lock.  Returns 1 when
# PATH went away first (the command finished).
hold_until_locked() {
	local f=$1 n=0
	command -v flock >/dev/null 2>&1 || return 0
	while flock -n -x "$f" true 2>/dev/null; do
		n=$((n + 1))
		[ $n -le 10000 ] || return 1
		kill -CONT "$PID"
		kill -STOP "$PID"
		[ -e "$f" ] || return 1
	done
	return 0
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
