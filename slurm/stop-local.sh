#!/bin/sh
# Stops the cluster slurm/start-local.sh started and forgets its queue (munged keeps running:
# other software may use it).
dir=${PS_SLURM_DIR:-/tmp/patchsweep-slurm}
for daemon in slurmd slurmctld; do
    pidfile="$dir/$daemon.pid"
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
sleep 1
for daemon in slurmd slurmctld; do
    pidfile="$dir/$daemon.pid"
    [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null
    rm -f "$pidfile"
done
rm -rf "$dir/spool"
exit 0
