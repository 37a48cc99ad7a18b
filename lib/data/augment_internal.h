/* Raw augmentation kernels (no context: usable from the sampler's prefetch thread). */
#ifndef DIFFCL_AUGMENT_INTERNAL_H
#define DIFFCL_AUGMENT_INTERNAL_H

#include "data/data_internal.h"

struct diffcl_tensor;

/* Validate and complete user options (defaults for fields the caller's version lacks). */
diffcl_status dc_augment_read_options(const diffcl_augment_options *in, diffcl_augment_options *o,
                                      const char *fn);

/* One augmented patch of a case held in raw buffers: img [C, dims], lab [dims] or NULL;
 * out_img [C, P], out_lab [P] or NULL, with P = patch (patch[0] = 1 for 2-D); out_weak
 * [C, P] or NULL receives the same patch before the intensity and blur transforms (the weak
 * view of a weak/strong pair: the same geometry). Returns 0, or -1 when out of memory. */
int dc_kern_augment(const float *img, const uint8_t *lab, int C, const int64_t dims[3], int two_d,
                    const int64_t patch[3], const diffcl_augment_options *o, diffcl_rng_key key,
                    float *out_img, uint8_t *out_lab, float *out_weak, int n_threads);

/* The strong intensity transforms of one sample, draws from @p d. */
int dc_kern_intensity(float *img, int C, const int64_t dims[3], int two_d,
                      const diffcl_augment_options *o, dc_draw *d, int n_threads);

/* C, dims (dims[0] = 1 for 2-D) of an F32 image [C, (D), H, W]. */
diffcl_status dc_image_dims(const struct diffcl_tensor *image, int *C, int64_t dims[3], int *two_d,
                            const char *fn);

#endif
