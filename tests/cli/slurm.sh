#!/bin/bash
# contrib/slurm on a real Slurm: munged, slurmctld and slurmd started here
# on loopback with a throw-away slurm.conf (SLURM_CONF), one node = this
# host.  qshard-sbatch submits a 4-part gptq conversion as a job array and a
# dependent merge job; one running task is cancelled (scancel JOB_2), rerun
# alone with qshard-sbatch --only 2 (it resumes its .partial), the merge job
# then runs, and its output is byte-identical to a single convert.
# Skipped (77) without the Debian packages slurmctld, slurmd, slurm-client
# and munge, or without root (slurmd launches the jobs).  Every daemon and
# job is stopped by PID on exit, and a watchdog bounds the whole test.
. "$top_srcdir/tests/cli/lib.sh"

skip() {
	echo "SKIP: $*"
	exit 77
}
for tool in munged mungekey slurmctld slurmd sbatch squeue scancel scontrol sinfo; do
	command -v "$tool" >/dev/null 2>&1 || skip "$tool not installed (contrib/quickstart.sh installs Slurm)"
done
[ "$(id -u)" = 0 ] || skip "slurmd must run as root to launch jobs"
# the daemons need this host's name to resolve (slurmctld binds to it) and
# a cgroup file system (slurmd's cgroup plugin); a bare chroot, as make
# check-fresh builds, has neither
getent hosts "$(hostname -s)" >/dev/null 2>&1 ||
	skip "this host's name '$(hostname -s)' does not resolve (slurmctld needs it)"
grep -q ' /sys/fs/cgroup' /proc/mounts 2>/dev/null ||
	skip "no cgroup file system under /sys/fs/cgroup (slurmd needs one)"
need_numpy

D=$T/slurm
mkdir -p "$D/state" "$D/spool" "$D/run" "$D/key" "$D/logs"
chmod 755 "$D" "$D/run"
chmod 700 "$D/key"
export SLURM_CONF=$D/slurm.conf
pids=()
jobs_started=()
watchdog=

cleanup() {
	set +e
	if [ ${#jobs_started[@]} -gt 0 ]; then
		timeout 10 scancel "${jobs_started[@]}" 2>/dev/null
		# the job processes slurmd started must be gone before it stops
		for _ in $(seq 1 50); do
			[ -z "$(timeout 5 scontrol listpids 2>/dev/null | awk 'NR > 1 && $1 != "-1" {print $1}')" ] && break
			sleep 0.2
		done
		for p in $(timeout 5 scontrol listpids 2>/dev/null | awk 'NR > 1 && $1 != "-1" {print $1}'); do
			kill -9 "$p" 2>/dev/null
		done
	fi
	# slurmd, slurmctld, munged: by the PIDs started here
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null
	done
	for p in "${pids[@]}"; do
		for _ in $(seq 1 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	[ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null
	if [ "${keep_logs:-0}" = 1 ]; then
		for f in "$D"/logs/* "$T"/work/slurm-*.out; do
			[ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
		done
	fi
	rm -rf "$T"
}
trap cleanup EXIT
trap 'echo "FAIL: timed out or interrupted"; keep_logs=1; exit 1' TERM INT
# nothing below may take longer than this
(sleep "${QSHARD_SLURM_TIMEOUT:-400}"; kill -TERM $$) 2>/dev/null &
watchdog=$!

die() {
	keep_logs=1
	fail "$@"
}

# wait_for SECONDS WHAT CMD...: polls CMD until it succeeds
wait_for() {
	local limit=$1 what=$2
	shift 2
	local end=$((SECONDS + limit))
	until "$@"; do
		[ "$SECONDS" -lt "$end" ] || die "timed out waiting for $what"
		sleep 0.1
	done
}

# ---- munge: a fresh key and a daemon on a private socket
mungekey -c -k "$D/key/munge.key" -b 1024 >/dev/null 2>&1 || die "mungekey failed"
munged -F -f --socket="$D/run/munge.sock" --key-file="$D/key/munge.key" \
	--pid-file="$D/run/munged.pid" --seed-file="$D/key/munge.seed" \
	--log-file="$D/logs/munged.log" >"$D/logs/munged.out" 2>&1 &
pids+=($!)
wait_for 10 munged test -S "$D/run/munge.sock"

# ---- slurm.conf: this host as the one node, loopback only
host=$(hostname -s)
node=$(slurmd -C 2>/dev/null | head -n 1)
cpus=$(echo "$node" | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p')
mem=$(echo "$node" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
[ -n "$cpus" ] && [ -n "$mem" ] || die "slurmd -C printed no CPUs/RealMemory: $node"
# leave a margin, or a node reporting a little less than configured drains
mem=$((mem > 2048 ? mem - 1024 : mem / 2))
# two free loopback ports (ports chosen by the kernel, released at once)
read -r ctld_port d_port < <("$PY" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
cat >"$SLURM_CONF" <<CONF
ClusterName=qshardtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/run/munge.sock
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/logs/slurmctld.log
SlurmdLogFile=$D/logs/slurmd.log
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=qshard Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -D -c >"$D/logs/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D >"$D/logs/slurmd.out" 2>&1 &
pids+=($!)
node_idle() {
	[ "$(timeout 5 sinfo -h -n "$host" -o %t 2>/dev/null)" = idle ]
}
wait_for 60 "the node to be idle" node_idle

# ---- the conversion: gptq with Hessians (compute-bound, seconds per part)
"$MKCKPT" --preset tiny -o "$T/ck" >/dev/null || die mkckpt
"$PY" "$top_srcdir/tests/cli/mkhessian.py" "$T/ck/model.safetensors" "$T/h.safetensors" ||
	die "writing Hessians"
conv=("$T/ck" -o "$T/work/model.qshard" --memory 64M --scheme gptq:bits=3
	--hessian "$T/h.safetensors" --sync tensor)
mkdir -p "$T/work" "$T/one"
SB=$top_srcdir/contrib/slurm/qshard-sbatch
cd "$T/work" || die "cd"
"$SB" -n 4 -j 2 --qshard "$QSHARD" --sbatch=--output="$T/work/slurm-%A_%a.out" \
	--sbatch=-c1 -- "${conv[@]}" >"$T/ids" 2>"$T/sb.err" || die "qshard-sbatch: $(cat "$T/sb.err")"
array=$(sed -n 's/^array //p' "$T/ids")
merge=$(sed -n 's/^merge //p' "$T/ids")
[ -n "$array" ] && [ -n "$merge" ] || die "qshard-sbatch printed no job ids: $(cat "$T/ids")"
jobs_started+=("$array" "$merge")
echo "array job $array, merge job $merge"

job_state() {
	timeout 5 scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n 1
}

# cancel task 2 while it converts: its .partial holds at least a tensor
p2=$T/work/model.part-2-of-4.qshard
task2_mid_run() {
	[ -f "$p2.partial" ] && [ "$(stat -c %s "$p2.partial")" -gt 200000 ]
}
wait_for 120 "task 2 to be converting" task2_mid_run
# freeze it first (local signals, milliseconds): a part takes about a
# second, and under load the cancel's round trip through slurmctld was
# once long enough for task 2 to finish its part, leaving nothing to
# resume.  scancel sends SIGCONT with SIGTERM, which qshard handles as an
# interrupt (the .partial stays).
task2_id=$(timeout 5 scontrol show job "${array}_2" 2>/dev/null |
	sed -n 's/^ *JobId=\([0-9]*\).*/\1/p' | head -n 1)
[ -n "$task2_id" ] || die "no job id for task ${array}_2"
for p in $(timeout 5 scontrol listpids "$task2_id" 2>/dev/null | awk 'NR > 1 && $1 != "-1" {print $1}'); do
	kill -STOP "$p" 2>/dev/null && echo "task 2 frozen: pid $p"
done
task2_mid_run || die "task 2 finished its part before it could be cancelled (test timing)"
timeout 10 scancel "${array}_2" || die "scancel ${array}_2 failed"
task2_cancelled() { [ "$(job_state "${array}_2")" = CANCELLED ]; }
wait_for 60 "task 2 to be cancelled" task2_cancelled
[ -f "$p2.partial" ] || die "the cancelled task left no .partial"
[ -f "$p2" ] && die "the cancelled task completed its part"

# the single-machine reference, while the other tasks run
one=("${conv[@]}")
one[2]=$T/one/model.qshard
expect_exit 0 "$QSHARD" convert "${one[@]}" -T 1 --progress none

# the other tasks complete; the merge job waits for a dependency that can
# no longer be met
others_done() {
	for k in 1 3 4; do
		[ "$(job_state "${array}_$k")" = COMPLETED ] || return 1
	done
}
wait_for 240 "tasks 1, 3 and 4" others_done
[ "$(job_state "$merge")" = PENDING ] || die "merge job is $(job_state "$merge"), not pending"

# rerun task 2 alone; the merge job now waits for it
"$SB" -n 4 --only 2 --merge-job "$merge" --qshard "$QSHARD" \
	--sbatch=--output="$T/work/slurm-%A_%a.out" --sbatch=-c1 -- "${conv[@]}" \
	>"$T/ids2" 2>"$T/sb.err" || die "qshard-sbatch --only 2: $(cat "$T/sb.err")"
rerun=$(sed -n 's/^array //p' "$T/ids2")
[ -n "$rerun" ] || die "no job id for the rerun"
jobs_started+=("$rerun")
merge_done() {
	local s
	s=$(job_state "$merge")
	case $s in COMPLETED) return 0 ;; FAILED | CANCELLED | TIMEOUT | NODE_FAIL) die "merge job $s" ;; esac
	return 1
}
wait_for 240 "the merge job" merge_done
grep -q "resuming" "$T"/work/slurm-"${rerun}"_2.out || die "the rerun did not resume: $(cat "$T"/work/slurm-"${rerun}"_2.out)"
[ -f "$T/work/model.qshard" ] || die "no merged output"
cmp "$T/work/model.qshard" "$T/one/model.qshard" || die "Slurm-merged output differs from one convert"
for k in 1 2 3 4; do
	[ -f "$T/work/model.part-$k-of-4.qshard" ] || die "merge removed part $k"
done
echo "PASS slurm (array $array, task 2 cancelled and rerun as $rerun, merge $merge)"
