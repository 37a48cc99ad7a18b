/* Internal trainer state shared by trainer.c, trainer_checkpoint.c and the evaluation code. */
#ifndef DIFFCL_TRAINER_INTERNAL_H
#define DIFFCL_TRAINER_INTERNAL_H

#include <stdio.h>

#include "diffcl/data.h"
#include "diffcl/diffusion.h"
#include "diffcl/optim.h"
#include "diffcl/plan.h"
#include "diffcl/train.h"
#include "tensor/tensor_internal.h"
#include "train/distributed_internal.h" /* MPI data parallelism */

/* RNG purposes (streams) of the trainer's draws. */
enum {
    STREAM_DS_SUP = 0x54520001u,    /* t and noise of the DS on labeled patches */
    STREAM_DS_PSEUDO = 0x54520002u, /* t and noise of the DS on CS pseudo labels */
    STREAM_DDIM = 0x54520003u,      /* x_T of the DS pseudo label */
    STREAM_VOXELS = 0x54520004u     /* contrastive voxel sample */
};

/* Parts of a training step, timed when DIFFCL_PROFILE=1 (trainer.c, docs/performance.md). */
enum {
    PROF_BATCH,
    PROF_CS,
    PROF_DS_SUP,
    PROF_PSEUDO,
    PROF_UNLABELED,
    PROF_BACKWARD,
    PROF_STEP,
    PROF_N
};

struct diffcl_trainer {
    diffcl_context *ctx;
    int profile;         /* DIFFCL_PROFILE=1: time the parts of each step */
    double prof[PROF_N]; /* seconds summed over prof_steps steps */
    double prof_t;       /* the end of the last timed part */
    int64_t prof_steps;
    diffcl_train_options o;
    char *s_layout, *s_data_dir, *s_train_list, *s_val_list, *s_labeled_list, *s_out_dir;
    char *s_init_weights;
    char *s_label_map;
    diffcl_dataset *train_set;
    diffcl_dataset *val_set;
    diffcl_split split;
    diffcl_plan *plan; /* the preprocessing plan (o.plan), applied by both data sets; or NULL */
    diffcl_sampler *sampler;
    diffcl_module *cs;
    diffcl_module *ds; /* NULL for the supervised method */
    diffcl_optimizer *opt;
    diffcl_tensor *bank; /* [C, F] prototype memory bank */
    int64_t it;
    double best_dice;
    int64_t best_it;
    /* curves for the plot */
    double *loss_hist;
    int64_t n_loss, cap_loss;
    double *val_it, *val_dice;
    int64_t n_val, cap_val;
    struct dc_dist *dist; /* MPI data parallelism (distributed.c); NULL: one process */
    /* The shard (dc_trainer_set_shard): rows shard_rank, shard_rank + shard_size, ... of each
     * half of the global batch. The per-sample draws of a row are keyed by its global index:
     * samples_l [batch_labeled] and samples_u [batch_unlabeled] within the labeled and the
     * unlabeled half, samples_cs [both] in the CS's global batch (labeled half first). */
    int shard_rank, shard_size;
    uint32_t *samples_l, *samples_u, *samples_cs;
};

/* Serialise / parse the options as JSON. The parser copies the string options into
 * @p strings (the caller frees them); DC_TRAIN_OPTION_STRINGS holds them all. */
#define DC_TRAIN_OPTION_STRINGS 8
char *dc_train_options_to_json(const diffcl_train_options *o);
diffcl_status dc_train_options_from_json(const char *json, diffcl_train_options *o, char **strings,
                                         int n_strings);
/* The CS (under @p cs_prefix, "" for none) and the DS (under "ds.") of @p tr with their
 * configurations and the training options, into @p all (trainer_checkpoint.c). */
diffcl_status dc_trainer_add_networks(const diffcl_trainer *tr, diffcl_tensor_dict *all,
                                      const char *cs_prefix);
/* diffcl_trainer_create; @p fresh 0 (a resumed run, whose checkpoint then supplies the CS)
 * leaves o->init_weights unread (trainer.c). */
diffcl_status dc_trainer_create(diffcl_context *ctx, const diffcl_train_options *opts, int fresh,
                                diffcl_trainer **out);
/* Fine-tuning: load the matching tensors of tr->o.init_weights into the CS, log what was loaded
 * and skipped; the CS is unchanged on error (trainer_init.c). */
diffcl_status dc_trainer_load_init_weights(diffcl_trainer *tr);
/* Train rank @p rank of @p size's shard of the global batch (@p size times the batch per rank)
 * from now on: a new sampler makes the global batch, each step keeps rows rank, rank + size, ...
 * of each half, and every per-sample draw (diffusion t and noise, DDIM x_T, contrastive voxels,
 * dropout masks) is keyed by the row's global index, so a sample draws the same on any rank.
 * The trainer is unchanged on error. dc_trainer_create sets (0, 1); diffcl_trainer_set_mpi_comm
 * the communicator's placement; a test may call it alone to emulate one rank in one process
 * (without any all-reduce) (trainer.c). */
diffcl_status dc_trainer_set_shard(diffcl_trainer *tr, int rank, int size);
/* Append a point to the loss curve (trainer.c). */
void dc_trainer_push_loss(diffcl_trainer *tr, double loss);
/* Mean foreground Dice of the CS over the validation set (sliding over whole cases). */
diffcl_status dc_trainer_validate(diffcl_trainer *tr, double *mean_dice);
/* Draw curves.png: training loss and validation Dice. */
diffcl_status dc_plot_curves(const char *path, const double *loss, int64_t n_loss,
                             const double *val_x, const double *val_y, int64_t n_val,
                             int64_t total_iters);
/* L^c_p: the CS's Dice + CE on the DS pseudo label @p pseudo (I64), weighted per voxel as
 * o->cps_variant says; @p probs: the DS's smoothed probabilities (confidence variant),
 * @p agree: the F32 agreement mask (agreement variant) (cross_supervision.c). */
diffcl_status dc_cs_pseudo_loss(const diffcl_train_options *o, const diffcl_tensor *logits,
                                const diffcl_tensor *pseudo, const diffcl_tensor *probs,
                                const diffcl_tensor *agree, diffcl_tensor **loss);
/* The unlabeled voxels of the contrastive term, as flat positions into @p labels (I64
 * [N, ...]): from each sample, within @p base (F32 mask like labels; NULL: all), its quota
 * (o->contrast_voxels / o->batch_unlabeled) split equally between the classes of @p labels when
 * o->contrast_balanced, else uniform (0.1.0 drew them uniformly over the whole batch). Sample n
 * is keyed by samples[n] (NULL: n), its global index in a sharded batch, so its voxels depend
 * neither on the rank nor on the other samples of the rank. */
diffcl_status dc_contrast_voxels(const diffcl_train_options *o, const diffcl_tensor *base,
                                 const diffcl_tensor *labels, const uint32_t *samples, uint32_t it,
                                 diffcl_tensor **voxels);
/* Segment one case [C,(D),H,W] with the CS as `diffcl infer` does (sliding window with the
 * training patch, evaluation mode): labels U8 [(D),H,W]. */
diffcl_status dc_segment_case(diffcl_trainer *tr, const diffcl_tensor *image,
                              diffcl_tensor **labels);

#endif
