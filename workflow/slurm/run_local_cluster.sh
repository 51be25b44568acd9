#!/usr/bin/env bash
# Prove the SLURM profile on a real, one-node SLURM cluster on this machine.
#
#   sudo bash workflow/slurm/run_local_cluster.sh [WORKDIR]     (or: make slurm-test)
#
# Installs Debian's slurm-wlm, munge, slurmdbd and mariadb-server (apt-get), writes a
# one-node slurm.conf for localhost (2 CPUs, 20 GB) with accounting through slurmdbd,
# starts munged, mariadb, slurmdbd, slurmctld and slurmd, runs the tiny workflow
# (tests/configs/tiny.yaml) once through workflow/profiles/slurm and once locally,
# checks with sacct that every rule ran as a SLURM job, compares the results and
# stops the daemons it started (trap). Needs root and a throwaway machine or CI
# runner: it installs system packages and runs the daemons as root.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VENV:-$ROOT/.venv}
WORK=${1:-$(mktemp -d /tmp/cinnflow-slurm.XXXXXX)}
WORK=$(mkdir -p "$WORK" && cd "$WORK" && pwd)
NODE=$(hostname -s)
CLUSTER=cinnflow
log() { echo "run_local_cluster: $*" >&2; }

[[ $(id -u) == 0 ]] || { log "must run as root (installs packages, starts daemons)"; exit 2; }
[[ -x $VENV/bin/snakemake ]] || { log "no $VENV/bin/snakemake: run make setup"; exit 2; }

# ---------------------------------------------------------------- packages
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v mariadbd >/dev/null; then
  log "installing slurm-wlm, munge, slurmdbd, mariadb-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    slurm-wlm slurm-client munge slurmdbd mariadb-server >"$WORK/apt.log"
fi
"$VENV/bin/python" -c "import snakemake_executor_plugin_slurm" 2>/dev/null || {
  log "installing the SLURM executor plugin (pip install -e '.[slurm]')"
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[slurm]"
}

# ---------------------------------------------------------------- configuration
ETC=$WORK/etc; STATE=$WORK/state; LOGS=$WORK/log; RUN=$WORK/run
mkdir -p "$ETC" "$STATE/ctld" "$STATE/d" "$LOGS" "$RUN"
export SLURM_CONF=$ETC/slurm.conf   # sbatch, sacct, ... and the daemons read it
cat >"$SLURM_CONF" <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
# The plugin's --comment rule_<name> is how the checks below find each rule's job.
AccountingStoreFlags=job_comment
MinJobAge=300
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=2 RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
cat >"$ETC/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$LOGS/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=cinnflow
StorageLoc=slurm_acct_db
CONF
chmod 600 "$ETC/slurmdbd.conf"
# srun inside a job step looks at the default place, not at SLURM_CONF.
LINKED_CONF=
if [[ ! -e /etc/slurm/slurm.conf ]]; then
  mkdir -p /etc/slurm && ln -s "$SLURM_CONF" /etc/slurm/slurm.conf
  LINKED_CONF=/etc/slurm/slurm.conf
fi

# ---------------------------------------------------------------- daemons
STARTED=()
stop_daemons() {
  local status=$?
  log "stopping the daemons"
  for pidfile in "$RUN/slurmd.pid" "$RUN/slurmctld.pid" "$RUN/slurmdbd.pid"; do
    [[ -s $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  for name in "${STARTED[@]}"; do
    case $name in
      mariadb) mysqladmin --socket=/run/mysqld/mysqld.sock shutdown 2>/dev/null || true ;;
      munge) [[ -s /run/munge/munged.pid ]] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true ;;
    esac
  done
  [[ -n $LINKED_CONF ]] && rm -f "$LINKED_CONF"
  exit $status
}
trap stop_daemons EXIT

wait_for() {  # wait_for SECONDS COMMAND...: retry until the command succeeds
  local limit=$1; shift
  for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  log "gave up waiting for: $*"; return 1
}

if ! pgrep -x munged >/dev/null; then
  mkdir -p /run/munge && chown munge:munge /run/munge
  [[ -s /etc/munge/munge.key ]] || (mungekey --create 2>/dev/null || create-munge-key -f)
  runuser -u munge -- /usr/sbin/munged
  STARTED+=(munge)
fi
wait_for 10 bash -c 'munge -n | unmunge'

if ! mysqladmin --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1; then
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  mysqld_safe --user=mysql >"$LOGS/mariadb.log" 2>&1 &
  STARTED+=(mariadb)
fi
wait_for 60 mysqladmin --socket=/run/mysqld/mysqld.sock ping
mysql --socket=/run/mysqld/mysqld.sock <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'cinnflow';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

slurmdbd
wait_for 60 sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
sacctmgr -i add account cinnflow Cluster="$CLUSTER" >/dev/null 2>&1 || true
sacctmgr -i add user root Account=cinnflow >/dev/null 2>&1 || true
slurmctld
slurmd -N "$NODE"
wait_for 60 bash -c "sinfo -h -N -o %T | grep -qx idle"
sinfo
log "cluster up: $(sinfo -h -o '%P %D %c %m %T')"

# ---------------------------------------------------------------- the two runs
copy_workflow() {
  mkdir -p "$1/tests"
  cp -r "$ROOT/Snakefile" "$ROOT/workflow" "$ROOT/config" "$1/"
  cp -r "$ROOT/tests/configs" "$1/tests/"
}
export PATH=$VENV/bin:$PATH
copy_workflow "$WORK/local"
copy_workflow "$WORK/slurm"
# What a user does for their cluster: partition and account in the profile; this
# cluster has 2 CPUs and no GPU, so the 8-thread rules get 2 and train gpu: 0.
python - "$WORK/slurm/workflow/profiles/slurm/config.yaml" <<'PY'
import sys, yaml
path = sys.argv[1]
profile = yaml.safe_load(open(path))
profile["default-resources"].update(slurm_partition="debug", slurm_account="cinnflow")
profile["set-threads"] = {rule: 2 for rule in profile["set-threads"]}
for resources in profile["set-resources"].values():
    if resources.get("cpus_per_task", 1) > 2:
        resources["cpus_per_task"] = 2
    if "gpu" in resources:
        resources["gpu"] = 0
yaml.safe_dump(profile, open(path, "w"), sort_keys=False)
PY

SINCE=$(date +%Y-%m-%dT%H:%M:%S)
START=$(date +%s)
log "SLURM run in $WORK/slurm"
(cd "$WORK/slurm" && snakemake --profile workflow/profiles/slurm \
    --configfile tests/configs/tiny.yaml >"$LOGS/snakemake-slurm.log" 2>&1) || {
  tail -50 "$LOGS/snakemake-slurm.log"; log "the SLURM run failed"; exit 1; }
log "SLURM run done in $(( $(date +%s) - START )) s"
START=$(date +%s)
log "local run in $WORK/local"
(cd "$WORK/local" && snakemake --profile workflow/profiles/default --cores 2 \
    --configfile tests/configs/tiny.yaml >"$LOGS/snakemake-local.log" 2>&1) || {
  tail -50 "$LOGS/snakemake-local.log"; log "the local run failed"; exit 1; }
log "local run done in $(( $(date +%s) - START )) s"

# ---------------------------------------------------------------- checks
sacct -X -n -P --starttime="$SINCE" -o JobID,JobName,State,ExitCode,Comment \
  >"$WORK/sacct.txt"
log "sacct: $(wc -l <"$WORK/sacct.txt") jobs"
python - "$WORK" <<'PY'
import hashlib, json, sys
from pathlib import Path
import numpy as np

work = Path(sys.argv[1])
rows = [line.split("|") for line in (work / "sacct.txt").read_text().splitlines()]
comments = " ".join(row[4] for row in rows)
rules = ["simulate", "prepare", "plot_events", "train", "plot_training", "sample",
         "calibrate", "closure", "summarize"]
missing = [rule for rule in rules if f"rule_{rule}" not in comments]
failed = [row for row in rows if row[2] != "COMPLETED"]
print(f"sacct: {len(rows)} jobs, states {sorted({row[2] for row in rows})}")
if missing or failed:
    sys.exit(f"FAIL: rules without a COMPLETED SLURM job: {missing}; failed: {failed}")

def same_arrays(a, b):
    with np.load(a) as x, np.load(b) as y:
        return x.files == y.files and all(
            x[k].dtype == y[k].dtype and x[k].tobytes() == y[k].tobytes()
            for k in x.files)

local, slurm = work / "local/results", work / "slurm/results"
problems = []
for name in ("train", "val", "test"):
    a, b = local / f"prepared/{name}.npz", slurm / f"prepared/{name}.npz"
    digest = [hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in (a, b)]
    print(f"prepared/{name}.npz sha256 local {digest[0]} slurm {digest[1]}")
    if digest[0] != digest[1]:
        problems.append(f"prepared/{name}.npz differs")
posterior = same_arrays(local / "posterior/test.npz", slurm / "posterior/test.npz")
print(f"posterior/test.npz arrays bit-identical: {posterior}")
for name in ("calibration", "closure"):
    a, b = (json.loads((p / f"metrics/{name}.json").read_text()) for p in (local, slurm))
    print(f"metrics/{name}.json equal: {a == b}")
    if posterior and a != b:
        problems.append(f"metrics/{name}.json differs from equal posteriors")
if problems:
    sys.exit("FAIL: " + "; ".join(problems))
print("OK: every rule ran as a SLURM job; prepared data bit-identical to the local run")
PY
