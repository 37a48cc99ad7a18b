/* The HF-Mamba module: FFT high-pass split of a feature map, a (bidirectional) Mamba block
 * over the high band's voxel tokens, and a residual or attention combine. */
#include <stdlib.h>

#include "diffcl/layer.h"
#include "diffcl/mamba.h"
#include "layer/module_internal.h"
#include "layer/nn_internal.h"

typedef struct hfm_impl {
    diffcl_hf_mamba_options o;
} hfm_impl;

static void free_impl(void *p)
{
    free(p);
}

void diffcl_hf_mamba_options_init(diffcl_hf_mamba_options *opts)
{
    if (!opts) return;
    diffcl_hf_mamba_options d = DIFFCL_HF_MAMBA_OPTIONS_INIT;
    *opts = d;
}

/* The high band of x: FFT high-pass on the patch as one period, or on the patch padded with
 * zeros / by reflection and cropped back (o->border). */
static diffcl_status high_band(const diffcl_hf_mamba_options *o, const diffcl_tensor *x,
                               const diffcl_freq_options *fo, diffcl_tensor **high)
{
    if (o->border == DIFFCL_HFM_BORDER_PERIODIC) return diffcl_freq_filter(x, fo, high);
    const int nsp = x->ndim - 2, reflect = o->border == DIFFCL_HFM_BORDER_REFLECT;
    int64_t pad[3] = {0, 0, 0};
    for (int a = 0; a < nsp; a++) {
        int64_t L = x->shape[2 + a], p = o->border_pad > 0 ? o->border_pad : (L + 3) / 4;
        if (reflect && p > L - 1) p = L - 1;
        pad[3 - nsp + a] = p;
    }
    diffcl_tensor *xp = NULL, *hp = NULL, *cur = NULL, *next = NULL;
    diffcl_status s = DIFFCL_OK;
    DC_STEP(dc_spatial_pad(x, pad, reflect, &xp));
    DC_STEP(diffcl_freq_filter(xp, fo, &hp));
    if (s == DIFFCL_OK) cur = diffcl_tensor_retain(hp);
    for (int a = 0; a < nsp && s == DIFFCL_OK; a++) { /* crop back, axis by axis */
        s = diffcl_tensor_narrow(cur, 2 + a, pad[3 - nsp + a], x->shape[2 + a], &next);
        diffcl_tensor_free(cur);
        cur = next;
        next = NULL;
    }
    diffcl_tensor_free(xp);
    diffcl_tensor_free(hp);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(cur);
        return s;
    }
    *high = cur;
    return DIFFCL_OK;
}

static diffcl_status hfm_forward(diffcl_module *m, const diffcl_tensor *x, diffcl_tensor **out)
{
    const hfm_impl *hi = m->impl;
    const int64_t C = hi->o.channels;
    if ((x->ndim != 4 && x->ndim != 5) || x->shape[1] != C)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "hf_mamba: input %s; expected [N,%lld,H,W] or [N,%lld,D,H,W]",
                        dc_shape_str(x), (long long)C, (long long)C);
    const int nd = x->ndim;
    int64_t L = 1;
    for (int i = 2; i < nd; i++) L *= x->shape[i];
    diffcl_freq_options fo = DIFFCL_FREQ_OPTIONS_INIT;
    fo.band = DIFFCL_FREQ_HIGH;
    fo.window = hi->o.window;
    fo.cutoff = hi->o.cutoff;
    int to_tokens[5] = {0, 2, 3, 4, 1}, from_tokens[5] = {0, 4, 1, 2, 3};
    if (nd == 4) {
        to_tokens[2] = 3;
        to_tokens[3] = 1;
        from_tokens[1] = 3;
        from_tokens[2] = 1;
        from_tokens[3] = 2;
    }
    int64_t tok_shape[3] = {x->shape[0], L, C}, grid_shape[5];
    grid_shape[0] = x->shape[0];
    for (int i = 2; i < nd; i++) grid_shape[i - 1] = x->shape[i];
    grid_shape[nd - 1] = C;

    diffcl_status s = DIFFCL_OK;
    diffcl_tensor *high = NULL, *hp = NULL, *tok = NULL, *tn = NULL, *tm = NULL, *grid = NULL;
    diffcl_tensor *back = NULL, *gate = NULL;
    DC_STEP(high_band(&hi->o, x, &fo, &high));
    DC_STEP(diffcl_tensor_permute(high, to_tokens, &hp));
    DC_STEP(diffcl_tensor_reshape(hp, 3, tok_shape, &tok));
    DC_STEP(diffcl_module_forward(dc_module_get_child(m, "norm"), tok, &tn));
    DC_STEP(diffcl_module_forward(dc_module_get_child(m, "mixer"), tn, &tm));
    DC_STEP(diffcl_tensor_reshape(tm, nd, grid_shape, &grid));
    DC_STEP(diffcl_tensor_permute(grid, from_tokens, &back));
    if (hi->o.combine == DIFFCL_HFM_ATTENTION) {
        DC_STEP(diffcl_sigmoid(back, &gate));
        DC_STEP(diffcl_mul(x, gate, out));
    } else {
        DC_STEP(diffcl_add(x, back, out));
    }
    diffcl_tensor *tmp[] = {high, hp, tok, tn, tm, grid, back, gate};
    for (size_t i = 0; i < sizeof tmp / sizeof tmp[0]; i++) diffcl_tensor_free(tmp[i]);
    if (s != DIFFCL_OK) dc_error_prefix("hf_mamba");
    return s;
}
static const dc_module_vtable HFM_VT = {"hf_mamba", hfm_forward, free_impl};

diffcl_status diffcl_hf_mamba_create(diffcl_context *ctx, const diffcl_hf_mamba_options *opts,
                                     diffcl_module **out)
{
    const char *fn = "diffcl_hf_mamba_create";
    DC_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    DC_CHECK_ARG(ctx, "%s: ctx is NULL", fn);
    DC_CHECK_ARG(opts, "%s: options are required (channels)", fn);
    diffcl_hf_mamba_options o = DIFFCL_HF_MAMBA_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts, offsetof(diffcl_hf_mamba_options, init_key), 0, fn));
    DC_CHECK_ARG(o.channels >= 1, "%s: channels %d must be >= 1", fn, o.channels);
    DC_CHECK_ARG(o.combine == DIFFCL_HFM_RESIDUAL || o.combine == DIFFCL_HFM_ATTENTION,
                 "%s: combine %d is not RESIDUAL or ATTENTION", fn, (int)o.combine);
    DC_CHECK_ARG(o.window >= DIFFCL_WINDOW_GAUSSIAN && o.window <= DIFFCL_WINDOW_BOX,
                 "%s: window %d is not GAUSSIAN, IDEAL or BOX", fn, (int)o.window);
    DC_CHECK_ARG(o.cutoff > 0, "%s: cutoff %g must be > 0", fn, o.cutoff);
    DC_CHECK_ARG(o.norm_eps >= 0, "%s: norm_eps %g must be >= 0", fn, o.norm_eps);
    DC_CHECK_ARG(o.border >= DIFFCL_HFM_BORDER_PERIODIC && o.border <= DIFFCL_HFM_BORDER_REFLECT,
                 "%s: border %d is not PERIODIC, ZERO or REFLECT", fn, (int)o.border);
    DC_CHECK_ARG(o.border_pad >= 0 && o.border_pad <= 4096, "%s: border_pad %d not in [0, 4096]",
                 fn, o.border_pad);

    hfm_impl *hi = dc_calloc_raw(1, sizeof *hi);
    if (!hi) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    hi->o = o;
    diffcl_module *m = dc_module_new(ctx, &HFM_VT, hi);
    if (!m) return DIFFCL_ERR_OUT_OF_MEMORY;
    diffcl_norm_options no = DIFFCL_NORM_OPTIONS_INIT;
    no.kind = DIFFCL_NORM_LAYER;
    no.channels = o.channels;
    no.eps = o.norm_eps;
    diffcl_module *norm = NULL, *mixer = NULL;
    diffcl_status s = diffcl_norm_create(ctx, &no, &norm);
    if (s == DIFFCL_OK) s = dc_module_add_child(m, "norm", norm);
    diffcl_mamba_options mo = DIFFCL_MAMBA_OPTIONS_INIT;
    mo.d_model = o.channels;
    mo.d_state = o.d_state;
    mo.d_conv = o.d_conv;
    mo.expand = o.expand;
    mo.dt_rank = o.dt_rank;
    mo.bidirectional = o.bidirectional != 0;
    mo.scan_chunk = o.scan_chunk;
    mo.init_key = o.init_key;
    if (s == DIFFCL_OK) s = diffcl_mamba_create(ctx, &mo, &mixer);
    if (s == DIFFCL_OK) s = dc_module_add_child(m, "mixer", mixer);
    if (s != DIFFCL_OK) {
        diffcl_module_free(m);
        dc_error_prefix("%s", fn);
        return s;
    }
    *out = m;
    return DIFFCL_OK;
}
