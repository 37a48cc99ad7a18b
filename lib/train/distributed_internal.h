/* Internal data-parallel machinery (lib/train/distributed.c): gradient all-reduce buckets
 * driven by the gradient-ready hooks, batch sharding, cross-rank prototypes. Every function
 * exists in builds without MPI too (a NULL dc_dist means "one process"). */
#ifndef DIFFCL_DISTRIBUTED_INTERNAL_H
#define DIFFCL_DISTRIBUTED_INTERNAL_H

#include "diffcl/distributed.h"
#include "tensor/tensor_internal.h"

typedef struct dc_dist dc_dist;

/* Duplicate *(MPI_Comm *)comm_ptr and prepare buckets over the F32 leaves @p params
 * (borrowed; they must outlive the dc_dist), adding a gradient-ready hook to each.
 * Collective. DIFFCL_ERR_UNSUPPORTED without MPI. */
diffcl_status dc_dist_create(void *comm_ptr, diffcl_tensor *const *params, int n_params,
                             dc_dist **out);
void dc_dist_free(dc_dist *d);      /* removes the hooks it added (all hooks of those params) */
int dc_dist_rank(const dc_dist *d); /* 0 for NULL */
int dc_dist_size(const dc_dist *d); /* 1 for NULL */
int64_t dc_dist_bytes(const dc_dist *d); /* gradient bytes all-reduced per step */
/* Buckets of the last step started from the hooks (before the backward pass ended) / in all. */
void dc_dist_bucket_stats(const dc_dist *d, int *from_hooks, int *total);
/* Broadcast the parameters (and @p extra, may be NULL, an F32 tensor) from rank 0. */
diffcl_status dc_dist_broadcast(dc_dist *d, diffcl_tensor *extra);
/* Rows r, r+S, ... (S = size) of each half of a global batch: image [S*bl + S*bu, ...]
 * labeled first, label [S*bl, ...] (may be NULL). New tensors. No MPI needed. */
diffcl_status dc_dist_shard(int rank, int size, int bl, int bu, const diffcl_tensor *image,
                            const diffcl_tensor *label, diffcl_tensor **image_out,
                            diffcl_tensor **label_out);
/* Around diffcl_backward(): arm the hooks, then launch what is left, wait and write the
 * averaged gradients back into the parameters. */
void dc_dist_begin_backward(dc_dist *d);
diffcl_status dc_dist_finish_backward(dc_dist *d);
/* Collective agreement before the update: returns DIFFCL_OK only when every rank passed
 * DIFFCL_OK; @p vals[n] are replaced by their mean over the ranks (for logging). */
diffcl_status dc_dist_agree(dc_dist *d, diffcl_status local, int64_t iteration, double *vals,
                            int n);
/* Replace @p protos [C,F] and @p counts F64 [C] (from diffcl_class_prototypes on this rank's
 * features [N,F,...] and labels) by the prototypes of all ranks' labeled voxels. */
diffcl_status dc_dist_prototypes(dc_dist *d, const diffcl_tensor *features,
                                 const diffcl_tensor *labels, int n_classes, diffcl_tensor *protos,
                                 diffcl_tensor *counts);

#endif
