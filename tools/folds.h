/* Cross-validation folds of `diffcl train --folds K --fold k [--splits FILE]` (folds.c). */
#ifndef DIFFCL_TOOLS_FOLDS_H
#define DIFFCL_TOOLS_FOLDS_H

#include <diffcl/diffcl.h>

#include "args.h"

/* Make or reuse the splits file and point @p a's options at fold a->fold: the fold's
 * validation cases become the run's validation list (the trainer leaves them out of training,
 * labeled and unlabeled), and a labeled list is cut to the fold's training part. The lists are
 * written into the run folder. 0, or 1 after printing why not. */
int folds_prepare(diffcl_context *ctx, train_args *a);

/* Print, for each fold of the splits file @p path, the mean of @p dice (one value per case
 * @p ids[i], NaN left out) over the fold's validation cases that are among @p ids, then the
 * mean and sample std of the fold means. Every case must belong to a fold. 0, or 1 after
 * printing why not. */
int folds_summarize(const char *path, char *const *ids, int64_t n, const double *dice,
                    int64_t stride);

#endif
