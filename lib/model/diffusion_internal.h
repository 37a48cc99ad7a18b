/* Internal pieces of the diffusion segmentation network shared by its source files:
 *   diffusion_schedule.c  betas / alpha_bar tables, q_sample, respacing, timestep draws
 *   time_embedding.c      sinusoidal embedding, the time MLP, the per-channel time bias op
 *   denoiser.c            the V-Net-shaped denoiser module, its forward and training loss
 *   ddim.c                DDIM sampling, one-step denoising, pseudo labels
 */
#ifndef DIFFCL_DIFFUSION_INTERNAL_H
#define DIFFCL_DIFFUSION_INTERNAL_H

#include "diffcl/diffusion.h"
#include "layer/module_internal.h"

struct diffcl_diffusion_schedule {
    diffcl_beta_schedule kind;
    int T;
    double *betas;     /* [T] */
    double *alpha_bar; /* [T] cumulative product of 1 - beta */
};

/* RNG draw offset of a sample's training timestep (beyond any noise draw). */
#define DC_DIFFUSION_T_OFFSET (1ull << 33)

/* Per-sample draws. Batch item n draws with the key's index key.index + samples[n], or
 * key.index + n when @p samples is NULL (the public functions): with a rank's shard of a global
 * batch, samples[n] is the item's global index, so a sample draws the same whatever rank and
 * row it lands on (docs/distributed.md). Each draw is reported to the context's draw hook
 * (dc_draw_report). */

/* Fill out[n] (n < N) with uniform timesteps in [0, T): draw DC_DIFFUSION_T_OFFSET of the
 * item's key. @p ctx (may be NULL) receives the reports. */
void dc_diffusion_draw_timesteps(diffcl_context *ctx, diffcl_rng_key key, int T, int N,
                                 const uint32_t *samples, int64_t *out);

/* Fill a contiguous float tensor [N, ...] with N(0,1) noise number @p k of each batch item. */
void dc_diffusion_fill_noise(diffcl_tensor *x, diffcl_rng_key key, uint64_t k,
                             const uint32_t *samples);

/* diffcl_diffusion_q_sample, diffcl_diffusion_loss_ex and diffcl_diffusion_sample with the
 * batch items keyed by @p samples (NULL: the public functions). */
diffcl_status dc_diffusion_q_sample_rows(const diffcl_diffusion_schedule *s,
                                         const diffcl_tensor *x0, const int64_t *t,
                                         diffcl_rng_key key, const uint32_t *samples,
                                         diffcl_tensor **x_t, diffcl_tensor **noise);
diffcl_status dc_diffusion_loss_rows(diffcl_module *m, const diffcl_tensor *image,
                                     const diffcl_tensor *label, diffcl_rng_key key,
                                     const uint32_t *samples,
                                     const diffcl_diffusion_loss_options *opts,
                                     diffcl_tensor **loss, diffcl_tensor **out);
diffcl_status dc_diffusion_sample_rows(diffcl_module *m, const diffcl_tensor *image,
                                       const diffcl_diffusion_sample_options *opts,
                                       const uint32_t *samples, diffcl_tensor **out);

/* ---- time embedding (time_embedding.c) ---- */

/* Sinusoidal embedding [N, dim] (F32): [sin(t f_i), cos(t f_i)], f_i = exp(-ln(1e4) i/(dim/2-1)),
 * computed in double and rounded. No gradient. */
diffcl_status dc_timestep_embedding(diffcl_context *ctx, const int64_t *t, int n, int dim,
                                    diffcl_dtype dtype, diffcl_tensor **out);

/* The time MLP module `temb` (children `dense.0`, `dense.1`: Linear(dim, hidden), Linear(hidden, hidden)). */
diffcl_status dc_time_mlp_create(diffcl_context *ctx, int dim, int hidden, uint64_t seed,
                                 uint32_t *init_counter, diffcl_module **out);
/* temb = dense.1(silu(dense.0(sinusoid(t)))) -> [N, hidden]. */
diffcl_status dc_time_mlp_forward(diffcl_module *temb, const int64_t *t, int n, int dim,
                                  diffcl_tensor **out);

/* A TembFusion module: child `temb_proj` = Linear(hidden, channels). */
diffcl_status dc_temb_fusion_create(diffcl_context *ctx, int hidden, int channels, uint64_t seed,
                                    uint32_t *init_counter, diffcl_module **out);
/* x + temb_proj(silu_temb)[:, :, None, ...]; silu_temb is SiLU(temb) [N, hidden]. */
diffcl_status dc_temb_fusion_forward(diffcl_module *fusion, const diffcl_tensor *x,
                                     const diffcl_tensor *silu_temb, diffcl_tensor **out);

/* Init-key stream of the denoiser's linear and conv layers. */
#define DC_STREAM_DIFFUSION_INIT 0x44494600u
#define DC_STREAM_DIFFUSION_DROPOUT 0x44494400u

/* ---- denoiser (denoiser.c) ---- */

/* The options of a denoiser module, or NULL (error set) if @p m is not one. */
const diffcl_diffusion_options *dc_diffusion_opts(const diffcl_module *m, const char *fn);

#endif
