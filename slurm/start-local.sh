#!/bin/sh
# Starts a real one-node Slurm cluster on this machine (munge, slurmctld, slurmd), for tests and
# for trying jobs/full_sweep.slurm without a cluster. Needs root and the Debian packages
# slurm-wlm and munge (tools/deps.sh slurm-wlm munge). Everything it writes lives in $PS_SLURM_DIR
# (default /tmp/patchsweep-slurm); the machine's own /etc/slurm is not touched. Afterwards:
#     export SLURM_CONF=$PS_SLURM_DIR/slurm.conf     # then sinfo, sbatch, squeue work
# Stop it with slurm/stop-local.sh.
set -eu
dir=${PS_SLURM_DIR:-/tmp/patchsweep-slurm}
[ "$(id -u)" -eq 0 ] || { echo "start-local.sh: needs root (it starts munged, slurmctld and slurmd)" >&2; exit 2; }
for cmd in munged slurmctld slurmd sbatch; do
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] ||
        { echo "start-local.sh: $cmd not found (tools/deps.sh slurm-wlm munge)" >&2; exit 2; }
done
mkdir -p "$dir/spool/ctld" "$dir/spool/d" "$dir/log"
# Ports from the state folder, so two clusters (two test runs) on one machine do not collide.
port=$((20000 + $(printf '%s' "$dir" | cksum | cut -d' ' -f1) % 4000 * 2))

# munge: Debian's package made /etc/munge/munge.key; munged runs as the munge user.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge && chown munge:munge /run/munge
    [ -f /etc/munge/munge.key ] || { /usr/sbin/mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f; }
    runuser -u munge -- /usr/sbin/munged
    sleep 1
fi

# One node with what slurmd detects (memory rounded down so the node never drains as "low").
cpus=$(/usr/sbin/slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -n 1)
mem=$(/usr/sbin/slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n 1)
mem=$((mem * 9 / 10))
cat > "$dir/slurm.conf" <<CONF
ClusterName=patchsweep-local
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it starts again (120 by default): short here,
# so the test of full_sweep.slurm's requeue takes seconds
AuthInfo=cred_expire=10
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$port
SlurmdPort=$((port + 1))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdTimeout=300
NodeName=localhost NodeHostname=$(hostname) NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
export SLURM_CONF="$dir/slurm.conf"
/usr/sbin/slurmctld -f "$SLURM_CONF" -i
/usr/sbin/slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 1 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -n 1)
    case "$state" in idle*|mixed*|alloc*) echo "local Slurm cluster up: $cpus CPUs (SLURM_CONF=$SLURM_CONF)"; exit 0 ;; esac
    sleep 0.5
done
echo "start-local.sh: the node did not come up; see $dir/log" >&2
exit 1
