/* Spatial padding of [N, C, (D), H, W] feature maps, zeros or reflection, with its backward.
 *
 * Used by the HF-Mamba module before its FFT: the FFT treats a patch as periodic, so at the
 * small grids of the deep V-Net levels (7x7x5, 6x6) the seam between opposite borders is most
 * of the "high frequency" the module sees. Padding moves the seam away from the patch, and
 * the filtered map is cropped back to the patch.
 *
 * Both directions go through one index map from each padded voxel to its source voxel (or
 * -1 for a zero), so the kernel and its adjoint cannot disagree. */
#include <stdlib.h>

#include "layer/nn_internal.h"
#include "tensor/tensor_internal.h"

/* Source index along one axis of length L for padded position o (pad p before): -1 for a
 * zero. Reflection as PyTorch's "reflect" (the edge voxel is not repeated; p < L). */
static int64_t source_index(int64_t o, int64_t p, int64_t L, int reflect)
{
    int64_t s = o - p;
    if (s >= 0 && s < L) return s;
    if (!reflect) return -1;
    if (s < 0) s = -s;
    if (s >= L) s = 2 * (L - 1) - s;
    return s;
}

/* map[o] = offset of the source voxel in the input plane, or -1; over the padded plane. */
static int64_t *plane_map(const int64_t L[3], const int64_t P[3], int reflect, int64_t *n_out)
{
    int64_t O[3] = {L[0] + 2 * P[0], L[1] + 2 * P[1], L[2] + 2 * P[2]};
    *n_out = O[0] * O[1] * O[2];
    int64_t *map = dc_malloc(sizeof *map * (size_t)*n_out);
    if (!map) return NULL;
    for (int64_t z = 0; z < O[0]; z++)
        for (int64_t y = 0; y < O[1]; y++)
            for (int64_t x = 0; x < O[2]; x++) {
                int64_t sz = source_index(z, P[0], L[0], reflect),
                        sy = source_index(y, P[1], L[1], reflect),
                        sx = source_index(x, P[2], L[2], reflect);
                map[(z * O[1] + y) * O[2] + x] =
                    sz < 0 || sy < 0 || sx < 0 ? -1 : (sz * L[1] + sy) * L[2] + sx;
            }
    return map;
}

/* Spatial lengths and pads as 3-vectors (a 2-D map has a depth of 1, pad 0). */
static void geometry(const diffcl_tensor *t, const int64_t pad_in[3], int64_t L[3], int64_t P[3])
{
    int nsp = t->ndim - 2;
    for (int a = 0; a < 3; a++) {
        int ax = a - (3 - nsp);
        L[a] = ax >= 0 ? t->shape[2 + ax] : 1;
        P[a] = ax >= 0 ? pad_in[a] : 0;
    }
}

/* out[plane][o] = in[plane][map[o]] (forward), or gin[plane][map[o]] += g[plane][o] (backward). */
static void apply_map(const diffcl_tensor *src, diffcl_tensor *dst, const int64_t *map,
                      int64_t n_map, int64_t n_in, int64_t planes, int adjoint)
{
    for (int64_t p = 0; p < planes; p++) {
        if (src->dtype == DIFFCL_F64) {
            const double *s = dc_f64(src) + p * (adjoint ? n_map : n_in);
            double *d = dc_f64(dst) + p * (adjoint ? n_in : n_map);
            for (int64_t o = 0; o < n_map; o++)
                if (adjoint) {
                    if (map[o] >= 0) d[map[o]] += s[o];
                } else {
                    d[o] = map[o] >= 0 ? s[map[o]] : 0.0;
                }
        } else {
            const float *s = dc_f32(src) + p * (adjoint ? n_map : n_in);
            float *d = dc_f32(dst) + p * (adjoint ? n_in : n_map);
            for (int64_t o = 0; o < n_map; o++)
                if (adjoint) {
                    if (map[o] >= 0) d[map[o]] += s[o];
                } else {
                    d[o] = map[o] >= 0 ? s[map[o]] : 0.0f;
                }
        }
    }
}

static diffcl_status pad_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    if (!dc_wants_grad(n, 0)) return DIFFCL_OK;
    const diffcl_tensor *x = n->inputs[0];
    int64_t L[3] = {n->i[0], n->i[1], n->i[2]}, P[3] = {n->i[3], n->i[4], n->i[5]}, n_map;
    int64_t *map = plane_map(L, P, (int)n->i[6], &n_map);
    diffcl_tensor *gc = dc_contiguous(g), *gx = dc_tensor_zeros_like(x);
    diffcl_status s = map && gc && gx ? DIFFCL_OK : DIFFCL_ERR_OUT_OF_MEMORY;
    if (s == DIFFCL_OK)
        apply_map(gc, gx, map, n_map, L[0] * L[1] * L[2], x->shape[0] * x->shape[1], 1);
    free(map);
    diffcl_tensor_free(gc);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(gx);
        return s;
    }
    gin[0] = gx;
    return DIFFCL_OK;
}

/* The backward reads only the shapes it saved in n->i. */
static const dc_op OP_SPATIAL_PAD = {"spatial_pad", pad_backward, NULL, 1u};

diffcl_status dc_spatial_pad(const diffcl_tensor *x, const int64_t pad[3], int reflect,
                             diffcl_tensor **out)
{
    const char *fn = "spatial_pad";
    *out = NULL;
    DC_CHECK_TENSOR(x, fn);
    if ((x->ndim != 4 && x->ndim != 5) || !dc_is_float(x->dtype))
        return dc_error(DIFFCL_ERR_SHAPE, "%s: input %s %s; expected F32/F64 [N,C,(D),H,W]", fn,
                        dc_shape_str(x), diffcl_dtype_name(x->dtype));
    int64_t L[3], P[3], n_map;
    geometry(x, pad, L, P);
    for (int a = 0; a < 3; a++)
        if (P[a] < 0 || (reflect && P[a] >= L[a] && P[a] > 0))
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "%s: pad %lld on an axis of %lld (reflection needs pad < "
                            "length)",
                            fn, (long long)P[a], (long long)L[a]);
    int64_t shape[5];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    for (int a = 0; a < x->ndim - 2; a++) shape[2 + a] += 2 * P[a + 5 - x->ndim];
    int64_t *map = plane_map(L, P, reflect, &n_map);
    diffcl_tensor *xc = dc_contiguous(x), *r = dc_tensor_empty(x->ctx, x->dtype, x->ndim, shape);
    if (!map || !xc || !r) {
        free(map);
        diffcl_tensor_free(xc);
        diffcl_tensor_free(r);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    apply_map(xc, r, map, n_map, L[0] * L[1] * L[2], x->shape[0] * x->shape[1], 0);
    free(map);
    diffcl_tensor_free(xc);
    diffcl_tensor *in[1] = {(diffcl_tensor *)x};
    dc_node *n = dc_record(r, &OP_SPATIAL_PAD, in, 1);
    if (n) {
        for (int a = 0; a < 3; a++) {
            n->i[a] = L[a];
            n->i[3 + a] = P[a];
        }
        n->i[6] = reflect;
    }
    *out = r;
    return DIFFCL_OK;
}
