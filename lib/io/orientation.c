/* Reorientation to RAS+: the voxel axes permuted and flipped so that they point, as closely as
 * the affine allows, to the right, anterior and superior (nibabel's as_closest_canonical).
 * Two scans of one body stored with different axis orders or directions then give the same
 * array, so a network trained on one orientation segments the other; the inverse puts the
 * prediction back on the input's grid, where the input's header applies. */
#include <math.h>
#include <string.h>

#include "diffcl/image_io.h"
#include "tensor/tensor_internal.h"

diffcl_status diffcl_orientation_to_ras(const diffcl_image_meta *meta, diffcl_orientation *o)
{
    DC_CHECK_ARG(meta && o, "diffcl_orientation_to_ras: meta and o must not be NULL");
    /* greedy: the largest |A[world][voxel]| pairs first (axis-aligned and near-aligned
     * affines; an oblique one gets its closest axes) */
    int used_w[3] = {0}, used_v[3] = {0};
    for (int round = 0; round < 3; round++) {
        int bw = -1, bv = -1;
        double best = -1;
        for (int w = 0; w < 3; w++)
            for (int v = 0; v < 3; v++)
                if (!used_w[w] && !used_v[v] && fabs(meta->affine[w][v]) > best) {
                    best = fabs(meta->affine[w][v]);
                    bw = w;
                    bv = v;
                }
        if (!(best > 0))
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "diffcl_orientation_to_ras: the affine is singular");
        used_w[bw] = used_v[bv] = 1;
        o->perm[bw] = bv;
        o->flip[bw] = meta->affine[bw][bv] < 0;
    }
    return DIFFCL_OK;
}

/* The source index of output voxel (a, b, c) (forward) or the reverse. */
static void map_index(const diffcl_orientation *o, const int64_t *in_shape, int inverse,
                      const int64_t out_idx[3], int64_t src[3])
{
    for (int j = 0; j < 3; j++) {
        if (!inverse) { /* out axis j is input axis perm[j] */
            int64_t n = in_shape[o->perm[j]];
            src[o->perm[j]] = o->flip[j] ? n - 1 - out_idx[j] : out_idx[j];
        } else { /* out (original) axis perm[j] comes from RAS axis j */
            int64_t n = in_shape[j];
            int64_t v = out_idx[o->perm[j]];
            src[j] = o->flip[j] ? n - 1 - v : v;
        }
    }
}

diffcl_status diffcl_reorient(const diffcl_tensor *t, const diffcl_orientation *o, int inverse,
                              diffcl_tensor **out)
{
    const char *fn = "diffcl_reorient";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_TENSOR(t, fn);
    DC_CHECK_ARG(o, "%s: orientation is NULL", fn);
    int seen[3] = {0};
    for (int j = 0; j < 3; j++) {
        DC_CHECK_ARG(o->perm[j] >= 0 && o->perm[j] < 3 && !seen[o->perm[j]],
                     "%s: perm is not a permutation of 0, 1, 2", fn);
        seen[o->perm[j]] = 1;
    }
    if (t->ndim < 3)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: %s has fewer than 3 spatial axes", fn,
                        dc_shape_str(t));
    int lead = t->ndim - 3;
    const int64_t *in_sp = t->shape + lead;
    int64_t shape[DIFFCL_MAX_DIMS];
    memcpy(shape, t->shape, sizeof(int64_t) * (size_t)lead);
    for (int j = 0; j < 3; j++) shape[lead + j] = inverse ? in_sp[o->perm[j]] : in_sp[o->perm[j]];
    if (inverse)
        for (int j = 0; j < 3; j++) shape[lead + o->perm[j]] = in_sp[j];
    diffcl_tensor *c = dc_contiguous(t);
    diffcl_tensor *r = c ? dc_tensor_empty(t->ctx, t->dtype, t->ndim, shape) : NULL;
    if (!c || !r) {
        diffcl_tensor_free(c);
        diffcl_tensor_free(r);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    size_t es = diffcl_dtype_size(t->dtype);
    int64_t vol = in_sp[0] * in_sp[1] * in_sp[2], n_lead = vol ? dc_numel(t) / vol : 0;
    const int64_t *os = shape + lead;
    const unsigned char *src = dc_data(c);
    unsigned char *dst = dc_data(r);
    for (int64_t l = 0; l < n_lead; l++) {
        int64_t idx[3], s3[3], k = 0;
        for (idx[0] = 0; idx[0] < os[0]; idx[0]++)
            for (idx[1] = 0; idx[1] < os[1]; idx[1]++)
                for (idx[2] = 0; idx[2] < os[2]; idx[2]++, k++) {
                    map_index(o, in_sp, inverse, idx, s3);
                    int64_t si = (s3[0] * in_sp[1] + s3[1]) * in_sp[2] + s3[2];
                    memcpy(dst + (size_t)(l * vol + k) * es, src + (size_t)(l * vol + si) * es, es);
                }
    }
    diffcl_tensor_free(c);
    *out = r;
    return DIFFCL_OK;
}

void diffcl_reorient_meta(const diffcl_image_meta *in, const int64_t shape[3],
                          const diffcl_orientation *o, diffcl_image_meta *out)
{
    diffcl_image_meta m;
    diffcl_image_meta_init(&m);
    m.ndim = in->ndim;
    for (int j = 0; j < 3; j++) {
        int v = o->perm[j];
        m.spacing[j] = in->spacing[v];
        for (int w = 0; w < 3; w++) m.affine[w][j] = (o->flip[j] ? -1 : 1) * in->affine[w][v];
    }
    for (int w = 0; w < 4; w++) m.affine[w][3] = in->affine[w][3];
    for (int j = 0; j < 3; j++) /* a flipped axis starts at the input's last voxel */
        if (o->flip[j])
            for (int w = 0; w < 3; w++)
                m.affine[w][3] += in->affine[w][o->perm[j]] * (double)(shape[o->perm[j]] - 1);
    /* the header described the input's grid, not this one: left out */
    *out = m;
}
