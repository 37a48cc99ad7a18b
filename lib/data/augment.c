/* Patch sampling and augmentation: crop (foreground-biased option), rot90/rotation/flips,
 * scale, and the strong intensity set. The raw kernels touch no context, so the sampler's
 * prefetch thread runs them. */
#include <math.h>
#include <string.h>

#include "data/augment_internal.h"
#include "tensor/tensor_internal.h"

void diffcl_augment_options_init(diffcl_augment_options *opts)
{
    if (!opts) return;
    diffcl_augment_options d = DIFFCL_AUGMENT_OPTIONS_INIT;
    *opts = d;
}

diffcl_status dc_augment_read_options(const diffcl_augment_options *in, diffcl_augment_options *o,
                                      const char *fn)
{
    diffcl_augment_options d = DIFFCL_AUGMENT_OPTIONS_INIT;
    *o = d;
    DC_TRY(dc_options_read(o, sizeof *o, in, offsetof(diffcl_augment_options, flip), 0, fn));
    DC_CHECK_ARG(o->fg_prob >= 0 && o->fg_prob <= 1, "%s: fg_prob %g not in [0, 1]", fn,
                 o->fg_prob);
    DC_CHECK_ARG(o->strong_prob >= 0 && o->strong_prob <= 1, "%s: strong_prob %g not in [0, 1]", fn,
                 o->strong_prob);
    DC_CHECK_ARG(o->scale_lo > 0 && o->scale_lo <= o->scale_hi, "%s: bad scale range [%g, %g]", fn,
                 o->scale_lo, o->scale_hi);
    DC_CHECK_ARG(o->blur_lo >= 0 && o->blur_lo <= o->blur_hi, "%s: bad blur range [%g, %g]", fn,
                 o->blur_lo, o->blur_hi);
    DC_CHECK_ARG(o->brightness_lo <= o->brightness_hi && o->contrast_lo <= o->contrast_hi &&
                     o->gamma_lo > 0 && o->gamma_lo <= o->gamma_hi,
                 "%s: bad brightness/contrast/gamma range", fn);
    DC_CHECK_ARG(o->rotate_deg >= 0 && o->rotate_deg <= 180, "%s: rotate_deg %g not in [0, 180]",
                 fn, o->rotate_deg);
    return DIFFCL_OK;
}

/* Strong intensity transforms of one sample (C channels of vol voxels). */
int dc_kern_intensity(float *img, int C, const int64_t dims[3], int two_d,
                      const diffcl_augment_options *o, dc_draw *d, int n_threads)
{
    int64_t vol = dims[0] * dims[1] * dims[2];
    double p = o->strong_prob;
    /* every draw is made whether or not the transform applies: the stream stays aligned */
    double u_blur = dc_draw_uniform(d, 0, 1), sigma = dc_draw_uniform(d, o->blur_lo, o->blur_hi);
    double u_b = dc_draw_uniform(d, 0, 1),
           b = dc_draw_uniform(d, o->brightness_lo, o->brightness_hi);
    double u_c = dc_draw_uniform(d, 0, 1), c = dc_draw_uniform(d, o->contrast_lo, o->contrast_hi);
    double u_g = dc_draw_uniform(d, 0, 1), g = dc_draw_uniform(d, o->gamma_lo, o->gamma_hi);
    if (u_blur < p && sigma > 0) {
        double sg[3] = {two_d ? 0 : sigma, sigma, sigma};
        if (dc_kern_gauss_blur(img, C, dims, sg, n_threads)) return -1;
    }
    for (int ch = 0; ch < C; ch++) {
        float *x = img + (int64_t)ch * vol;
        if (u_b < p)
            for (int64_t i = 0; i < vol; i++) x[i] = (float)(x[i] * b);
        if (u_c < p) {
            double m = 0;
            for (int64_t i = 0; i < vol; i++) m += x[i];
            m /= (double)vol;
            for (int64_t i = 0; i < vol; i++) x[i] = (float)((x[i] - m) * c + m);
        }
        if (u_g < p) {
            double lo = x[0], hi = x[0];
            for (int64_t i = 0; i < vol; i++) {
                lo = x[i] < lo ? x[i] : lo;
                hi = x[i] > hi ? x[i] : hi;
            }
            double r = hi - lo;
            if (r > 1e-12)
                for (int64_t i = 0; i < vol; i++) x[i] = (float)(pow((x[i] - lo) / r, g) * r + lo);
        }
    }
    return 0;
}

static inline float fetch(const float *src, const int64_t dims[3], int64_t z, int64_t y, int64_t x)
{
    if (z < 0 || y < 0 || x < 0 || z >= dims[0] || y >= dims[1] || x >= dims[2]) return 0.0f;
    return src[(z * dims[1] + y) * dims[2] + x];
}

/* Trilinear sample with zeros outside. */
static float sample_zero(const float *src, const int64_t dims[3], const double c[3])
{
    double fl[3], f[3];
    int64_t i0[3];
    for (int a = 0; a < 3; a++) {
        fl[a] = floor(c[a]);
        f[a] = c[a] - fl[a];
        i0[a] = (int64_t)fl[a];
    }
    double acc = 0;
    for (int dz = 0; dz < 2; dz++) {
        double wz = dz ? f[0] : 1 - f[0];
        if (wz == 0) continue;
        for (int dy = 0; dy < 2; dy++) {
            double wy = dy ? f[1] : 1 - f[1];
            if (wy == 0) continue;
            for (int dx = 0; dx < 2; dx++) {
                double wx = dx ? f[2] : 1 - f[2];
                if (wx == 0) continue;
                acc += wz * wy * wx * fetch(src, dims, i0[0] + dz, i0[1] + dy, i0[2] + dx);
            }
        }
    }
    return (float)acc;
}

int dc_kern_augment(const float *img, const uint8_t *lab, int C, const int64_t dims[3], int two_d,
                    const int64_t patch_in[3], const diffcl_augment_options *o, diffcl_rng_key key,
                    float *out_img, uint8_t *out_lab, float *out_weak, int n_threads)
{
    dc_draw d;
    d.key = key;
    d.offset = 0;
    int64_t P[3] = {two_d ? 1 : patch_in[0], patch_in[1], patch_in[2]};
    int64_t vol = dims[0] * dims[1] * dims[2];

    /* ---- crop origin (the case is virtually zero-padded symmetrically when smaller) ---- */
    int64_t origin[3];
    double u_fg = dc_draw_uniform(&d, 0, 1);
    int64_t fg_pick = -1;
    if (lab && u_fg < o->fg_prob) {
        int64_t n_fg = 0;
        for (int64_t i = 0; i < vol; i++) n_fg += lab[i] != 0;
        if (n_fg > 0) {
            int64_t k = dc_draw_int(&d, n_fg);
            for (int64_t i = 0; i < vol; i++)
                if (lab[i] && k-- == 0) {
                    fg_pick = i;
                    break;
                }
        }
    }
    for (int a = 0; a < 3; a++) {
        int64_t lo, hi; /* valid origins */
        if (dims[a] >= P[a]) {
            lo = 0;
            hi = dims[a] - P[a];
        } else {
            lo = hi = -((P[a] - dims[a]) / 2);
        }
        int64_t r = lo + dc_draw_int(&d, hi - lo + 1);
        if (fg_pick >= 0) {
            int64_t coord = a == 0   ? fg_pick / (dims[1] * dims[2])
                            : a == 1 ? (fg_pick / dims[2]) % dims[1]
                                     : fg_pick % dims[2];
            r = coord - P[a] / 2;
            r = r < lo ? lo : (r > hi ? hi : r);
        }
        origin[a] = r;
    }

    /* ---- geometry: src = centre + M * (out - (P-1)/2) ---- */
    double M[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    int pa = two_d ? 1 : 0, pb = two_d ? 2 : 1; /* rotation plane */
    double u_rot = dc_draw_uniform(&d, 0, 1);
    int k90 = 0;
    if (o->rot90) k90 = P[pa] == P[pb] ? (int)(u_rot * 4) % 4 : 2 * ((int)(u_rot * 2) % 2);
    double theta = dc_draw_uniform(&d, -o->rotate_deg, o->rotate_deg) * M_PI / 180.0;
    double ang = k90 * M_PI / 2 + theta;
    double ca = cos(ang), sa = sin(ang);
    if (k90 && theta == 0) { /* exact for multiples of 90 degrees */
        static const double cs[4][2] = {{1, 0}, {0, 1}, {-1, 0}, {0, -1}};
        ca = cs[k90][0];
        sa = cs[k90][1];
    }
    M[pa][pa] = ca;
    M[pa][pb] = -sa;
    M[pb][pa] = sa;
    M[pb][pb] = ca;
    for (int a = two_d ? 1 : 0; a < 3; a++) {
        double u = dc_draw_uniform(&d, 0, 1);
        if (o->flip && u < 0.5)
            for (int r = 0; r < 3; r++) M[r][a] = -M[r][a];
    }
    double u_scale = dc_draw_uniform(&d, 0, 1), sc = dc_draw_uniform(&d, o->scale_lo, o->scale_hi);
    if (o->strong && u_scale < o->strong_prob)
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++) M[r][c] /= sc;
    double centre[3];
    for (int a = 0; a < 3; a++) centre[a] = origin[a] + (P[a] - 1) * 0.5;

    const int64_t pvol = P[0] * P[1] * P[2];
#pragma omp parallel for collapse(2) schedule(static) num_threads(n_threads)
    for (int64_t z = 0; z < P[0]; z++)
        for (int64_t y = 0; y < P[1]; y++)
            for (int64_t x = 0; x < P[2]; x++) {
                double rel[3] = {z - (P[0] - 1) * 0.5, y - (P[1] - 1) * 0.5, x - (P[2] - 1) * 0.5};
                double src[3];
                for (int r = 0; r < 3; r++)
                    src[r] = centre[r] + M[r][0] * rel[0] + M[r][1] * rel[1] + M[r][2] * rel[2];
                int64_t o_i = (z * P[1] + y) * P[2] + x;
                for (int c = 0; c < C; c++)
                    out_img[(int64_t)c * pvol + o_i] =
                        sample_zero(img + (int64_t)c * vol, dims, src);
                if (out_lab) {
                    int64_t zi = (int64_t)floor(src[0] + 0.5), yi = (int64_t)floor(src[1] + 0.5),
                            xi = (int64_t)floor(src[2] + 0.5);
                    out_lab[o_i] = (zi < 0 || yi < 0 || xi < 0 || zi >= dims[0] || yi >= dims[1] ||
                                    xi >= dims[2])
                                       ? 0
                                       : lab[(zi * dims[1] + yi) * dims[2] + xi];
                }
            }
    /* the weak view: this geometry without the intensity and blur transforms */
    if (out_weak) memcpy(out_weak, out_img, sizeof(float) * (size_t)(C * pvol));
    if (o->strong) {
        dc_draw di = d;
        return dc_kern_intensity(out_img, C, P, two_d, o, &di, n_threads);
    }
    return 0;
}

/* Split an image tensor [C, (D), H, W] into C and dims[3]. */
diffcl_status dc_image_dims(const diffcl_tensor *image, int *C, int64_t dims[3], int *two_d,
                            const char *fn)
{
    if (image->ndim != 3 && image->ndim != 4)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: image shape %s: expected [C,D,H,W] or [C,H,W]", fn,
                        dc_shape_str(image));
    if (image->dtype != DIFFCL_F32)
        return dc_error(DIFFCL_ERR_DTYPE, "%s: image must be f32, not %s", fn,
                        diffcl_dtype_name(image->dtype));
    *C = (int)image->shape[0];
    *two_d = image->ndim == 3;
    dims[0] = *two_d ? 1 : image->shape[1];
    dims[1] = image->shape[image->ndim - 2];
    dims[2] = image->shape[image->ndim - 1];
    return DIFFCL_OK;
}

diffcl_status diffcl_augment_patch(const diffcl_tensor *image, const diffcl_tensor *label,
                                   const int64_t patch[3], const diffcl_augment_options *opts,
                                   diffcl_rng_key key, diffcl_tensor **patch_image,
                                   diffcl_tensor **patch_label)
{
    const char *fn = "diffcl_augment_patch";
    DC_CHECK_ARG(image && patch && patch_image, "%s: image, patch and patch_image are required",
                 fn);
    *patch_image = NULL;
    if (patch_label) *patch_label = NULL;
    diffcl_augment_options o;
    DC_TRY(dc_augment_read_options(opts, &o, fn));
    int C, two_d;
    int64_t dims[3];
    DC_TRY(dc_image_dims(image, &C, dims, &two_d, fn));
    for (int a = two_d ? 1 : 0; a < 3; a++)
        DC_CHECK_ARG(patch[a] >= 1 && patch[a] <= 4096, "%s: patch[%d] = %lld out of range", fn, a,
                     (long long)patch[a]);
    if (label) {
        int ok = label->dtype == DIFFCL_U8 && label->ndim == image->ndim - 1;
        for (int a = 0; ok && a < label->ndim; a++) ok = label->shape[a] == image->shape[a + 1];
        if (!ok)
            return dc_error(DIFFCL_ERR_SHAPE, "%s: label %s %s does not match image %s", fn,
                            diffcl_dtype_name(label->dtype), dc_shape_str(label),
                            dc_shape_str(image));
    }
    diffcl_tensor *ic = dc_contiguous(image), *lc = label ? dc_contiguous(label) : NULL;
    int64_t ishape[4], lshape[3];
    int nd = 0;
    ishape[nd++] = C;
    for (int a = two_d ? 1 : 0; a < 3; a++) lshape[nd - 1] = ishape[nd] = patch[a], nd++;
    diffcl_tensor *oi = ic ? dc_tensor_empty(image->ctx, DIFFCL_F32, nd, ishape) : NULL;
    diffcl_tensor *ol =
        (oi && label) ? dc_tensor_empty(image->ctx, DIFFCL_U8, nd - 1, lshape) : NULL;
    diffcl_status s = DIFFCL_OK;
    if (!ic || (label && !lc) || !oi || (label && !ol))
        s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    else if (dc_kern_augment(dc_f32(ic), lc ? (const uint8_t *)dc_data(lc) : NULL, C, dims, two_d,
                             patch, &o, key, dc_f32(oi), ol ? (uint8_t *)dc_data(ol) : NULL, NULL,
                             dc_threads(image->ctx)))
        s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    diffcl_tensor_free(ic);
    diffcl_tensor_free(lc);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(oi);
        diffcl_tensor_free(ol);
        return s;
    }
    *patch_image = oi;
    if (patch_label)
        *patch_label = ol;
    else
        diffcl_tensor_free(ol);
    return DIFFCL_OK;
}

diffcl_status diffcl_augment_intensity(const diffcl_tensor *batch,
                                       const diffcl_augment_options *opts, diffcl_rng_key key,
                                       diffcl_tensor **out)
{
    const char *fn = "diffcl_augment_intensity";
    DC_CHECK_ARG(batch && out, "%s: batch and out must not be NULL", fn);
    *out = NULL;
    diffcl_augment_options o;
    DC_TRY(dc_augment_read_options(opts, &o, fn));
    if (batch->ndim != 4 && batch->ndim != 5)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: batch shape %s: expected [N,C,(D),H,W]", fn,
                        dc_shape_str(batch));
    if (batch->dtype != DIFFCL_F32) return dc_error(DIFFCL_ERR_DTYPE, "%s: batch must be f32", fn);
    diffcl_tensor *o_t = dc_tensor_empty(batch->ctx, DIFFCL_F32, batch->ndim, batch->shape);
    if (!o_t) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    dc_copy_into(o_t, batch);
    int two_d = batch->ndim == 4;
    int64_t dims[3] = {two_d ? 1 : batch->shape[2], batch->shape[batch->ndim - 2],
                       batch->shape[batch->ndim - 1]};
    int C = (int)batch->shape[1];
    int64_t per = (int64_t)C * dims[0] * dims[1] * dims[2];
    for (int64_t n = 0; n < batch->shape[0]; n++) {
        dc_draw d = dc_draw_make(key.seed, key.stream, (uint32_t)n, key.iteration);
        if (dc_kern_intensity(dc_f32(o_t) + n * per, C, dims, two_d, &o, &d,
                              dc_threads(batch->ctx))) {
            diffcl_tensor_free(o_t);
            return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        }
    }
    *out = o_t;
    return DIFFCL_OK;
}
