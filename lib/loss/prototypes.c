/* Prototype helpers without gradients: class prototypes as masked feature averages, the EMA
 * memory-bank update, and keyed random sampling of voxel positions. */
#include <stdlib.h>

#include "loss/loss_internal.h"

#define PROTO_EPS 1e-12 /* F.normalize */

diffcl_status diffcl_class_prototypes(const diffcl_tensor *features, const diffcl_tensor *labels,
                                      const diffcl_tensor *mask, int64_t num_classes,
                                      diffcl_tensor **prototypes, diffcl_tensor **counts)
{
    static const char *fn = "diffcl_class_prototypes";
    DC_CHECK_ARG(prototypes, "%s: prototypes is NULL", fn);
    *prototypes = NULL;
    if (counts) *counts = NULL;
    DC_CHECK_TENSOR(labels, fn);
    DC_CHECK_ARG(num_classes >= 1 && num_classes <= INT32_MAX, "%s: num_classes is %lld; need >= 1",
                 fn, (long long)num_classes);
    int64_t N, F, S;
    DC_TRY(dc_loss_split(fn, features, "features", labels, "labels", &N, &F, &S));
    diffcl_context *ctx = features->ctx;
    const int64_t C = num_classes;
    diffcl_tensor *wt = NULL, *y = NULL, *fc = NULL;
    diffcl_status s = dc_loss_weights(fn, mask, labels, DIFFCL_F64, &wt);
    /* INT64_MIN: no value is ignored; masked-out voxels become -1 */
    if (s == DIFFCL_OK) s = dc_loss_labels(fn, labels, C, INT64_MIN, wt, dc_threads(ctx), &y);
    if (s == DIFFCL_OK && !(fc = dc_contiguous(features))) s = DIFFCL_ERR_OUT_OF_MEMORY;
    double *sums =
        s == DIFFCL_OK ? dc_calloc_raw((size_t)(C * F > 0 ? C * F : 1), sizeof *sums) : NULL;
    double *cnt = s == DIFFCL_OK ? dc_calloc_raw((size_t)C, sizeof *cnt) : NULL;
    diffcl_tensor *p = NULL, *ct = NULL;
    if (s == DIFFCL_OK && (!sums || !cnt))
        s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (s == DIFFCL_OK) {
        const int32_t *yl = (const int32_t *)dc_data(y);
        const double *w = wt ? dc_f64(wt) : NULL;
        const void *xb = dc_data(fc);
        for (int64_t n = 0; n < N; n++) {
            const int32_t *yn = yl + n * S;
            for (int64_t i = 0; i < S; i++)
                if (yn[i] >= 0) cnt[yn[i]] += w ? w[n * S + i] : 1.0;
            for (int64_t f = 0; f < F; f++) {
                int64_t base = (n * F + f) * S;
                for (int64_t i = 0; i < S; i++) {
                    if (yn[i] < 0) continue;
                    double v = dc_loss_load(xb, fc->dtype, base + i);
                    sums[yn[i] * F + f] += w ? w[n * S + i] * v : v;
                }
            }
        }
        p = dc_tensor_new(ctx, features->dtype, 2, (int64_t[]){C, F});
        ct = counts ? dc_tensor_new(ctx, DIFFCL_F64, 1, &C) : NULL;
        if (!p || (counts && !ct)) s = DIFFCL_ERR_OUT_OF_MEMORY;
    }
    if (s == DIFFCL_OK) {
        for (int64_t c = 0; c < C; c++) {
            double r2 = 0, *sc = sums + c * F;
            if (cnt[c] > 0)
                for (int64_t f = 0; f < F; f++) {
                    sc[f] /= cnt[c];
                    r2 += sc[f] * sc[f];
                }
            double inv = cnt[c] > 0 ? 1.0 / fmax(sqrt(r2), PROTO_EPS) : 0.0;
            for (int64_t f = 0; f < F; f++) {
                if (p->dtype == DIFFCL_F32)
                    dc_f32(p)[c * F + f] = (float)(sc[f] * inv);
                else
                    dc_f64(p)[c * F + f] = sc[f] * inv;
            }
            if (ct) dc_f64(ct)[c] = cnt[c];
        }
        for (int64_t k = 0; k < C * F; k++)
            if (!isfinite(sums[k])) {
                s = dc_error(DIFFCL_ERR_NUMERIC, "%s: features hold NaN/Inf (class %lld)", fn,
                             (long long)(k / F));
                break;
            }
    }
    free(sums);
    free(cnt);
    diffcl_tensor_free(wt);
    diffcl_tensor_free(y);
    diffcl_tensor_free(fc);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(p);
        diffcl_tensor_free(ct);
        return s;
    }
    *prototypes = p;
    if (counts) *counts = ct;
    return DIFFCL_OK;
}

diffcl_status diffcl_prototype_bank_update(diffcl_tensor *bank, const diffcl_tensor *new_protos,
                                           const diffcl_tensor *counts, double momentum)
{
    static const char *fn = "diffcl_prototype_bank_update";
    DC_CHECK_TENSOR(bank, fn);
    DC_CHECK_TENSOR(new_protos, fn);
    DC_CHECK_ARG(momentum >= 0 && momentum <= 1, "%s: momentum is %g; need [0,1]", fn, momentum);
    if (!dc_is_float(bank->dtype) || !dc_is_float(new_protos->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "%s: bank is %s and prototypes %s; need f32 or f64", fn,
                        diffcl_dtype_name(bank->dtype), diffcl_dtype_name(new_protos->dtype));
    if (bank->ndim != 2 || !dc_same_shape(bank, new_protos)) {
        char bs[96];
        snprintf(bs, sizeof bs, "%s", dc_shape_str(bank));
        return dc_error(DIFFCL_ERR_SHAPE, "%s: bank %s and prototypes %s must both be [C,F]", fn,
                        bs, dc_shape_str(new_protos));
    }
    if (!dc_is_contiguous(bank))
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                        "%s: the bank must be contiguous (updated in place)", fn);
    const int64_t C = bank->shape[0], F = bank->shape[1];
    if (counts && dc_numel(counts) != C)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: counts have shape %s; need [%lld]", fn,
                        dc_shape_str(counts), (long long)C);
    diffcl_tensor *pc = dc_contiguous(new_protos), *cc = counts ? dc_contiguous(counts) : NULL;
    if (!pc || (counts && !cc)) {
        diffcl_tensor_free(pc);
        diffcl_tensor_free(cc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    diffcl_status s = DIFFCL_OK;
    for (int64_t c = 0; c < C && s == DIFFCL_OK; c++) {
        double nr = 0, br = 0;
        for (int64_t f = 0; f < F; f++) {
            double v = dc_loss_load(dc_data(pc), pc->dtype, c * F + f);
            double b = dc_loss_load(dc_data(bank), bank->dtype, c * F + f);
            nr += v * v;
            br += b * b;
        }
        if (!isfinite(nr) || !isfinite(br)) {
            s = dc_error(DIFFCL_ERR_NUMERIC, "%s: class %lld holds NaN/Inf", fn, (long long)c);
            break;
        }
        int present = cc ? dc_loss_load(dc_data(cc), cc->dtype, c) > 0 : nr > 0;
        if (!present) continue;
        double m = br > 0 ? momentum : 0.0, r2 = 0;
        double *row = dc_malloc((size_t)F * sizeof *row);
        if (!row) {
            s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
            break;
        }
        for (int64_t f = 0; f < F; f++) {
            double v = dc_loss_load(dc_data(pc), pc->dtype, c * F + f);
            double b = dc_loss_load(dc_data(bank), bank->dtype, c * F + f);
            row[f] = m * b + (1.0 - m) * v;
            r2 += row[f] * row[f];
        }
        double inv = 1.0 / fmax(sqrt(r2), PROTO_EPS);
        for (int64_t f = 0; f < F; f++) {
            if (bank->dtype == DIFFCL_F32)
                dc_f32(bank)[c * F + f] = (float)(row[f] * inv);
            else
                dc_f64(bank)[c * F + f] = row[f] * inv;
        }
        free(row);
    }
    diffcl_tensor_free(pc);
    diffcl_tensor_free(cc);
    return s;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

diffcl_status diffcl_sample_voxels(const diffcl_tensor *mask, int64_t max_count, diffcl_rng_key key,
                                   diffcl_tensor **indices)
{
    static const char *fn = "diffcl_sample_voxels";
    DC_CHECK_ARG(indices, "%s: indices is NULL", fn);
    *indices = NULL;
    DC_CHECK_TENSOR(mask, fn);
    diffcl_tensor *mc = dc_contiguous(mask);
    if (!mc) return DIFFCL_ERR_OUT_OF_MEMORY;
    int64_t n = dc_numel(mc), M = 0;
    const void *mp = dc_data(mc);
    for (int64_t i = 0; i < n; i++) M += dc_loss_load(mp, mc->dtype, i) != 0;
    int64_t *pos = dc_malloc((size_t)(M ? M : 1) * sizeof *pos);
    if (!pos) {
        diffcl_tensor_free(mc);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    M = 0;
    for (int64_t i = 0; i < n; i++)
        if (dc_loss_load(mp, mc->dtype, i) != 0) pos[M++] = i;
    diffcl_tensor_free(mc);
    int64_t K = (max_count < 0 || max_count >= M) ? M : max_count;
    if (K < M) { /* partial Fisher-Yates: draw j picks among the M - j not yet taken */
        for (int64_t j = 0; j < K; j++) {
            uint32_t r[2];
            diffcl_rng_bits(key, (uint64_t)j * 2, 2, r);
            uint64_t v = ((uint64_t)r[0] << 32) | r[1];
            int64_t t = j + (int64_t)(v % (uint64_t)(M - j));
            int64_t tmp = pos[j];
            pos[j] = pos[t];
            pos[t] = tmp;
        }
        qsort(pos, (size_t)K, sizeof *pos, cmp_i64);
    }
    diffcl_tensor *r = dc_tensor_empty(mask->ctx, DIFFCL_I64, 1, &K);
    if (!r) {
        free(pos);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    if (K) memcpy(dc_data(r), pos, (size_t)K * sizeof *pos);
    free(pos);
    *indices = r;
    return DIFFCL_OK;
}
