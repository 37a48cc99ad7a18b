/**
 * @file distributed.h
 * @brief Data-parallel training over MPI (meson feature `mpi`, off by default).
 *
 * A trainer given an MPI communicator of N ranks trains as one process with an N times
 * larger batch: every rank builds the same networks (identical seeded initialisation, then
 * broadcast from rank 0), draws the batch of iteration `it` from the same seeded sampler
 * with a global batch of N x batch_labeled + N x batch_unlabeled samples and keeps the
 * samples r, r + N, r + 2N, ... of each half (a disjoint shard), averages the gradients of
 * both networks with MPI_Allreduce (bucketed, started from the gradient-ready hooks while
 * the backward pass is still running), computes the contrastive prototypes from all ranks'
 * labeled features, and lets only rank 0 validate and write log.csv, curves.png and the
 * checkpoints. BatchNorm statistics stay per rank (PyTorch DDP's default). The checkpoint
 * does not depend on the number of ranks: a run may be resumed with another N (the batch
 * per rank is kept, so the global batch changes with N).
 *
 * Without MPI support every function here returns DIFFCL_ERR_UNSUPPORTED (or 0 / 1 for the
 * queries), so programs can call them unconditionally. This header needs no mpi.h: the
 * communicator is passed as a pointer to an MPI_Comm.
 *
 * Thread safety: the trainer functions are used from the trainer's thread (one thread at a
 * time, as the trainer); diffcl_mpi_launch_init(), diffcl_mpi_launch_finalize() and
 * diffcl_mpi_abort() from the main thread. diffcl_mpi_available() is thread-safe.
 */
#ifndef DIFFCL_DISTRIBUTED_H
#define DIFFCL_DISTRIBUTED_H

#include "diffcl/train.h"

DIFFCL_BEGIN_DECLS

/** 1 when the library was built with MPI (meson -Dmpi=enabled), else 0. Thread-safe. */
DIFFCL_API int diffcl_mpi_available(void);

/**
 * Train @p tr data-parallel over the communicator pointed to by @p comm_ptr (an `MPI_Comm *`,
 * e.g. the address of a copy of MPI_COMM_WORLD; the trainer duplicates it, so the caller keeps ownership of
 * its communicator and may free it afterwards). Call it on every rank of the communicator,
 * right after diffcl_trainer_create() / diffcl_trainer_resume() and before the first step;
 * it is collective (it broadcasts rank 0's parameters and memory bank, adds a gradient-ready
 * hook to every parameter, and re-creates the sampler with the global batch). MPI must be
 * initialised by the caller. A communicator of one rank is accepted.
 * Errors: DIFFCL_ERR_UNSUPPORTED without MPI support, DIFFCL_ERR_STATE when MPI is not
 * initialised, DIFFCL_ERR_DTYPE for non-F32 parameters, DIFFCL_ERR_INVALID_ARGUMENT for NULL
 * arguments, DIFFCL_ERR_DISTRIBUTED when an MPI call fails (also from diffcl_trainer_step()
 * and diffcl_trainer_run() of an attached trainer: a rank died or communication broke; the
 * last checkpoint is kept). Not thread-safe (one trainer per thread, as the trainer itself).
 */
DIFFCL_API diffcl_status diffcl_trainer_set_mpi_comm(diffcl_trainer *tr, void *comm_ptr);

/** This process's rank in the trainer's communicator (0 without one). */
DIFFCL_API int diffcl_trainer_rank(const diffcl_trainer *tr);
/** Number of ranks in the trainer's communicator (1 without one). */
DIFFCL_API int diffcl_trainer_world_size(const diffcl_trainer *tr);
/**
 * Bytes of gradient all-reduced per step by this rank (the F32 size of both networks'
 * parameters; 0 without a communicator). For bandwidth estimates (docs/distributed.md).
 */
DIFFCL_API int64_t diffcl_trainer_allreduce_bytes(const diffcl_trainer *tr);

/**
 * For programs launched by `mpirun` / `srun --mpi=pmix`: when the environment shows an MPI
 * launcher (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_SIZE, PMI_RANK or MPI_LOCALNRANKS) and MPI is
 * not initialised yet, call MPI_Init_thread (MPI_THREAD_FUNNELED) and remember to finalise it. @p *launched
 * receives 1 when the process runs under a launcher with MPI initialised (by this call or
 * earlier), else 0; @p *rank and @p *size (may be NULL) receive MPI_COMM_WORLD's. Without MPI
 * support: DIFFCL_OK with *launched = 0. Call from the main thread, once.
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT when @p launched is NULL; DIFFCL_ERR_DISTRIBUTED when
 * MPI_Init_thread fails (the message names the MPI call and error).
 */
DIFFCL_API diffcl_status diffcl_mpi_launch_init(int *launched, int *rank, int *size);
/** Finalise MPI if diffcl_mpi_launch_init() initialised it; otherwise nothing. */
DIFFCL_API void diffcl_mpi_launch_finalize(void);
/**
 * After an error on this rank: MPI_Abort(MPI_COMM_WORLD, @p code), so the other ranks (which
 * would wait for this one in the next all-reduce) stop and the launcher reports the failure.
 * Does not return when MPI is initialised; without MPI (or not initialised) it returns.
 */
DIFFCL_API void diffcl_mpi_abort(int code);
/**
 * Attach MPI_COMM_WORLD to @p tr when diffcl_mpi_launch_init() found a launcher with more
 * than one rank; otherwise nothing (DIFFCL_OK). Collective over MPI_COMM_WORLD.
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for a NULL trainer (MPI builds), else those of
 * diffcl_trainer_set_mpi_comm(). Without MPI support it returns DIFFCL_OK and does nothing.
 */
DIFFCL_API diffcl_status diffcl_trainer_use_mpi_world(diffcl_trainer *tr);

DIFFCL_END_DECLS

#endif /* DIFFCL_DISTRIBUTED_H */
