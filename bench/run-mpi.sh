#!/bin/sh
# One-machine MPI scaling: the same global batch as 1 rank x 2 threads and as 2 ranks x 1 thread.
#   bench/run-mpi.sh BUILD_DIR [extra bench_mpi options]
set -e
B=${1:-build-mpi}; shift || true
M="mpirun --oversubscribe --allow-run-as-root --bind-to none --mca btl self,vader,tcp"
$M -np 1 "$B/bench/bench_mpi" --threads 2 --bl 4 --bu 4 "$@"
$M -np 2 "$B/bench/bench_mpi" --threads 1 --bl 2 --bu 2 "$@"
