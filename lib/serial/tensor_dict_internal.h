#ifndef DIFFCL_TENSOR_DICT_INTERNAL_H
#define DIFFCL_TENSOR_DICT_INTERNAL_H

#include "diffcl/checkpoint.h"
#include "tensor/tensor_internal.h"

struct diffcl_tensor_dict {
    diffcl_context *ctx;
    int n, cap;
    char **names;
    diffcl_tensor **tensors;
    int n_meta;
    char **meta_keys;
    char **meta_values;
};

#endif
