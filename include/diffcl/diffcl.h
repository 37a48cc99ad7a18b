/**
 * @file diffcl.h
 * @brief Umbrella header: includes every public libdiffcl header.
 */
#ifndef DIFFCL_DIFFCL_H
#define DIFFCL_DIFFCL_H

#include "diffcl/version.h"
#include "diffcl/core.h"
#include "diffcl/tensor.h"
#include "diffcl/autograd.h"
#include "diffcl/checkpoint.h"
#include "diffcl/module.h"
#include "diffcl/layer.h"
#include "diffcl/layer_conv.h"
#include "diffcl/fft.h"
#include "diffcl/scan.h"
#include "diffcl/mamba.h"
#include "diffcl/loss.h"
#include "diffcl/optim.h"
#include "diffcl/image_io.h"
#include "diffcl/data.h"
#include "diffcl/metrics.h"
#include "diffcl/infer.h"
#include "diffcl/diffusion.h"
#include "diffcl/model.h"
#include "diffcl/train.h"
#include "diffcl/plan.h"

#endif
