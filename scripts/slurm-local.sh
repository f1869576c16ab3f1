#!/usr/bin/env bash
# A single-host SLURM for tests and CI: munged, slurmctld and slurmd (Debian's slurm-wlm and munge, as root) with a
# configuration, key, state and logs of their own under DIR, on free ports. Stop it: scripts/slurm-local.sh stop DIR.
# Then: SLURM_CONF=DIR/slurm.conf sbatch ... (bench slurm reads SLURM_CONF as sbatch does).
set -euo pipefail
cmd=${1:?usage: slurm-local.sh start|stop DIR}
dir=$(mkdir -p "${2:?usage: slurm-local.sh start|stop DIR}" && cd "$2" && pwd)
if [ "$cmd" = stop ]; then
  # SIGTERM, then wait for the daemons to exit: slurmctld saves its state into DIR as it stops, which would race a
  # following rm -rf DIR.
  pids=()
  for daemon in slurmd slurmctld munged; do
    [ -f "$dir/$daemon.pid" ] && pids+=("$(cat "$dir/$daemon.pid")")
  done
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "${pids[@]}" 2>/dev/null || exit 0
    sleep 0.1
  done
  echo "slurm-local: still running after 10 s: ${pids[*]}" >&2
  exit 1
fi
for bin in munged mungekey slurmctld slurmd sinfo; do
  command -v "$bin" >/dev/null || { echo "slurm-local: $bin not found: apt-get install slurm-wlm munge" >&2; exit 2; }
done
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }
host=$(hostname)
mkdir -p "$dir/state" "$dir/spool"
mungekey --create --keyfile="$dir/munge.key" --force
chmod 600 "$dir/munge.key"
munged --force --key-file="$dir/munge.key" --socket="$dir/munge.sock" --pid-file="$dir/munged.pid" \
  --log-file="$dir/munged.log" --seed-file="$dir/munge.seed"
cat > "$dir/slurm.conf" <<CONF
ClusterName=bench
SlurmctldHost=$host
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
AuthInfo=socket=$dir/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# sbatch --wait polls every 2 s while that is under MinJobAge/3, then every 8 and 32 s: at the default (300) a 15 s job
# was seen ending 25 s late. Ended jobs stay 6 s, three polls.
MinJobAge=6
MpiDefault=none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$(nproc --all) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 120); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && { echo "slurm-local: up, SLURM_CONF=$SLURM_CONF"; exit 0; }
  sleep 0.5
done
echo "slurm-local: the node never became idle; $dir/slurmctld.log:" >&2
tail -n 20 "$dir/slurmctld.log" >&2
exit 1
