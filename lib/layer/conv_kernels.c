/* Convolution kernels: tiled vol2col + GEMM with a bounded workspace, F32 and F64 from one
 * template (conv_kernels.inc). See conv_internal.h for the strategy. */
#include <string.h>

#include <cblas.h>

#include "layer/conv_internal.h"

/* Per-thread column budget: about an L2 cache, so a tile is packed and consumed while hot.
 * Tiles never go below DC_MIN_COLS columns (GEMM efficiency, amortising the packing of
 * the weight matrix) and the whole workspace never above DC_MAX_WS_BYTES. */
#define DC_DEFAULT_TILE_BYTES ((size_t)1 << 20)
#define DC_MIN_COLS 256
#define DC_MAX_WS_BYTES ((size_t)64 << 20)

void dc_conv_set_tiling(diffcl_context *ctx, size_t tile_bytes, int64_t min_cols)
{
    ctx->conv_tile_bytes = tile_bytes;
    ctx->conv_min_cols = min_cols > 0 ? min_cols : 0;
}

void dc_conv_tiling_knobs(const diffcl_context *ctx, size_t *tile_bytes, int64_t *min_cols)
{
    *tile_bytes = ctx->conv_tile_bytes;
    *min_cols = ctx->conv_min_cols;
}

void dc_conv_set_mode(diffcl_context *ctx, int mode)
{
    ctx->conv_mode = mode;
}

typedef struct dc_conv_tiling {
    int64_t rows;     /* output rows (of out[2] voxels) per tile */
    int64_t tiles;    /* tiles per sample */
    int64_t ws_elems; /* column workspace in elements (all threads) */
    int parallel;     /* 1: tiles (or samples) in parallel, one GEMM per thread */
    int threads;
} dc_conv_tiling;

/* purpose: 0 forward, 1 input gradient, 2 weight gradient */
static dc_conv_tiling dc_conv_plan(diffcl_context *ctx, const dc_cgeo *g, size_t sz, int purpose)
{
    dc_conv_tiling t;
    const int nt = dc_threads(ctx) > 0 ? dc_threads(ctx) : 1;
    const int direct = dc_conv_is_pointwise(g);
    const int64_t L = g->out[2], R = g->out[0] * g->out[1];
    const int64_t K = direct ? (g->ci > g->co ? g->ci : g->co) : g->ci * dc_cgeo_kvol(g);
    const int64_t row_bytes = K * L * (int64_t)sz > 0 ? K * L * (int64_t)sz : 1;
    int64_t rows =
        (int64_t)(ctx->conv_tile_bytes ? ctx->conv_tile_bytes : DC_DEFAULT_TILE_BYTES) / row_bytes;
    int64_t min_cols = g->co > DC_MIN_COLS ? g->co : DC_MIN_COLS;
    if (ctx->conv_min_cols) min_cols = ctx->conv_min_cols; /* tests: exact control */
    if (rows * L < min_cols) rows = (min_cols + L - 1) / L;
    int64_t cap = (int64_t)(DC_MAX_WS_BYTES / (size_t)nt) / row_bytes;
    if (rows > cap) rows = cap;
    if (rows < 1) rows = 1;
    if (rows > R) rows = R;
    int64_t tiles = (R + rows - 1) / rows;
    /* enough work items to balance the threads, without going below the minimum tile */
    if (nt > 1 && g->n * tiles < 4 * nt) {
        int64_t want = (4 * nt + g->n - 1) / (g->n > 0 ? g->n : 1);
        int64_t r2 = (R + want - 1) / want;
        int64_t rmin = ((ctx->conv_min_cols ? ctx->conv_min_cols : DC_MIN_COLS) + L - 1) / L;
        if (r2 < rmin) r2 = rmin;
        if (r2 < rows) {
            rows = r2;
            tiles = (R + rows - 1) / rows;
        }
    }
    t.rows = rows;
    t.tiles = tiles;
    t.threads = nt;
    int par;
    if (purpose == 1 && !direct && !dc_conv_is_nonoverlap(g))
        par = g->n >= nt; /* overlapping scatter: one sample per thread */
    else
        par = g->n * tiles >= nt;
    par = par && nt > 1;
    if (ctx->conv_mode == 1) par = 1;
    if (ctx->conv_mode == 2) par = 0;
    t.parallel = par;
    t.ws_elems = direct ? 0 : (par ? nt : 1) * K * rows * L;
    return t;
}

/* Around a parallel region whose threads each call BLAS: OpenBLAS's OpenMP build runs
 * sequentially inside a parallel region by itself; its pthreads build must be told to
 * (else the calls contend for its one thread pool). Returns the count to restore, or 0. */
static int dc_blas_serial_begin(int parallel)
{
    if (!parallel || openblas_get_parallel() != 1) return 0;
    int n = openblas_get_num_threads();
    if (n <= 1) return 0;
    openblas_set_num_threads(1);
    return n;
}

static void dc_blas_serial_end(int saved)
{
    if (saved > 0) openblas_set_num_threads(saved);
}

#define T float
#define SFX f32
#define GEMM cblas_sgemm
#define DC_FAST_F32 1
#include "layer/conv_kernels.inc"

#define T double
#define SFX f64
#define GEMM cblas_dgemm
#include "layer/conv_kernels.inc"
