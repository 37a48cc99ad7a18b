/* Internal helpers of the eval layer shared with the layers above it. */
#ifndef DIFFCL_EVAL_INTERNAL_H
#define DIFFCL_EVAL_INTERNAL_H

#include "diffcl/tensor.h"

/* The log of the mean of the softmaxes (class axis 1) of @p n logit tensors of one shape
 * (DIFFCL_ERR_SHAPE otherwise): what a module returns so that the sliding window's softmax of
 * it is the mean of the members' probabilities (ensemble.c, the Diff-CL pair's CS+DS). */
diffcl_status dc_log_mean_softmax(const diffcl_tensor *const *logits, int n, diffcl_tensor **out);

#endif
