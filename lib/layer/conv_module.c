/* Conv{2,3}d / ConvTranspose{2,3}d modules with PyTorch's parameter names and init. */
#include <math.h>
#include <stdlib.h>

#include "layer/conv_internal.h"
#include "layer/module_internal.h"

void diffcl_conv_options_init(diffcl_conv_options *opts)
{
    if (!opts) return;
    diffcl_conv_options d = DIFFCL_CONV_OPTIONS_INIT;
    *opts = d;
}

typedef struct conv_module {
    diffcl_conv_geometry geometry;
    int transposed;
} conv_module;

static diffcl_status conv_module_forward(diffcl_module *m, const diffcl_tensor *x,
                                         diffcl_tensor **out)
{
    const conv_module *c = m->impl;
    const diffcl_tensor *w = dc_module_param(m, "weight"), *b = dc_module_param(m, "bias");
    return c->transposed ? diffcl_conv_transpose(x, w, b, &c->geometry, out)
                         : diffcl_conv(x, w, b, &c->geometry, out);
}

static const dc_module_vtable VT_CONV2D = {"conv2d", conv_module_forward, free};
static const dc_module_vtable VT_CONV3D = {"conv3d", conv_module_forward, free};
static const dc_module_vtable VT_CONVT2D = {"conv_transpose2d", conv_module_forward, free};
static const dc_module_vtable VT_CONVT3D = {"conv_transpose3d", conv_module_forward, free};

/* Parameter init (PyTorch's _ConvNd.reset_parameters: kaiming_uniform_(a=sqrt(5)) on the
 * weight, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias, with
 * fan_in = weight.size(1) * kernel volume). Draws: the weight takes draws 0..numel(w)-1
 * of init_key in row-major order, the bias the next Cout draws of the same key, so two
 * convolutions with different keys never share numbers. */
diffcl_status diffcl_conv_create(diffcl_context *ctx, const diffcl_conv_options *opts,
                                 diffcl_module **out)
{
    DC_CHECK_ARG(out, "diffcl_conv_create: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx, "diffcl_conv_create: ctx is NULL");
    DC_CHECK_ARG(opts, "diffcl_conv_create: opts is NULL");
    diffcl_conv_options o = DIFFCL_CONV_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts,
                           offsetof(diffcl_conv_options, init_key) + sizeof(diffcl_rng_key), 0,
                           "diffcl_conv_create"));
    DC_CHECK_ARG(o.in_channels >= 1 && o.out_channels >= 1,
                 "diffcl_conv_create: in_channels %d and out_channels %d must be >= 1",
                 o.in_channels, o.out_channels);
    diffcl_conv_geometry g = DIFFCL_CONV_GEOMETRY_INIT;
    DC_TRY(dc_conv_geometry_read(&o.geometry, "diffcl_conv_create", &g));
    if (o.transposed)
        for (int a = 0; a < g.dims; a++)
            DC_CHECK_ARG(g.output_padding[a] < g.stride[a] || g.output_padding[a] < g.dilation[a],
                         "diffcl_conv_create: output_padding[%d] = %d must be smaller than the "
                         "stride (%d) or the dilation (%d)",
                         a, g.output_padding[a], g.stride[a], g.dilation[a]);

    conv_module *impl = dc_malloc(sizeof *impl);
    if (!impl) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_conv_create: out of memory");
    impl->geometry = g;
    impl->transposed = o.transposed != 0;
    const dc_module_vtable *vt = o.transposed ? (g.dims == 3 ? &VT_CONVT3D : &VT_CONVT2D)
                                              : (g.dims == 3 ? &VT_CONV3D : &VT_CONV2D);
    diffcl_module *m = dc_module_new(ctx, vt, impl);
    if (!m) return DIFFCL_ERR_OUT_OF_MEMORY;

    int64_t wsh[5];
    wsh[0] = o.transposed ? o.in_channels : o.out_channels;
    wsh[1] = o.transposed ? o.out_channels : o.in_channels;
    int64_t kvol = 1;
    for (int a = 0; a < g.dims; a++) {
        wsh[2 + a] = g.kernel[a];
        kvol *= g.kernel[a];
    }
    const int64_t fan_in = wsh[1] * kvol;
    const float bound = (float)(1.0 / sqrt((double)fan_in));
    diffcl_tensor *w = dc_tensor_empty(ctx, DIFFCL_F32, g.dims + 2, wsh);
    const int64_t nw = w ? dc_numel(w) : 0;
    if (w) diffcl_rng_uniform(o.init_key, 0, (size_t)nw, -bound, bound, dc_f32(w));
    diffcl_status s = dc_module_add_param(m, "weight", w);
    if (s == DIFFCL_OK && o.bias) {
        int64_t bsh[1] = {o.out_channels};
        diffcl_tensor *b = dc_tensor_empty(ctx, DIFFCL_F32, 1, bsh);
        if (b)
            diffcl_rng_uniform(o.init_key, (uint64_t)nw, (size_t)o.out_channels, -bound, bound,
                               dc_f32(b));
        s = dc_module_add_param(m, "bias", b);
    }
    if (s != DIFFCL_OK) {
        diffcl_module_free(m);
        return s;
    }
    *out = m;
    return DIFFCL_OK;
}
