# Sourced by the sbatch scripts: launch vae_ddp's ranks with srun (PMIx), forward the
# preemption signal, and keep the log of a requeued job in one file.
#
# Slurm sends SIGUSR1 to this batch shell (--signal=B:USR1@T) before the time limit or a
# preemption. It is forwarded to the ranks; vae_ddp stops at the next step on every rank,
# rank 0 writes checkpoints/last.pt and, under Slurm, runs `scontrol requeue` (vae_ddp
# --requeue, on by default); the restarted job (SLURM_RESTART_COUNT >= 1) resumes from it
# with --resume auto.

run_vae_ddp() {
  echo "[$(date '+%F %T')] job ${SLURM_JOB_ID:-?} start (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}: $SLURM_NTASKS rank(s)"
  export OMPI_MCA_rmaps_base_oversubscribe="${OMPI_MCA_rmaps_base_oversubscribe:-0}"
  srun --mpi=pmix --kill-on-bad-exit=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" \
    "$VAE_DDP" --resume auto "$@" &
  local step=$!
  trap 'echo "[$(date "+%F %T")] stop signal: forwarding SIGUSR1 to the ranks"; kill -USR1 $step 2>/dev/null' USR1 TERM
  local rc=0
  while true; do
    wait $step; rc=$?
    kill -0 $step 2>/dev/null || break   # wait returned for a trapped signal: keep waiting
  done
  echo "[$(date '+%F %T')] job ${SLURM_JOB_ID:-?} ranks exited with $rc"
  return $rc
}

# run_on_gpus [vae_ddp options]: run_vae_ddp with one rank per GPU and NCCL between them
# (--device cuda --backend nccl), unless the options name a device: with --device cpu the same
# job trains on the nodes' CPUs and all-reduces through MPI (how tests/slurm runs the GPU
# scripts on its CPU-only nodes).
run_on_gpus() {
  local a defaults=(--device cuda --backend nccl)
  for a in "$@"; do case "$a" in --device|--device=*) defaults=() ;; esac; done
  export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"              # NCCL's own errors reach the log
  run_vae_ddp "${defaults[@]}" --threads "${SLURM_CPUS_PER_TASK:-1}" "$@"
}
