/* Suite train, test plan: the preprocessing plan (plan.h) on a generated nnU-Net-style data set
 * (spacing 0.7 x 0.7 x 2.5 mm, channel 0 CT in HU, channel 1 MRI-like, 3 classes): its rules,
 * JSON, apply and invert; and a run that trains with it and infers end to end, the prediction
 * on the input's grid with the input's header and affine. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"
#include "diffcl/plan.h"
#include "train/trainer_internal.h"

static diffcl_context *ctx;
static void setup(void)
{
    ctx = test_context();
}
static void teardown(void)
{
    diffcl_context_free(ctx);
}

#define N_CASES 6
#define N_LABELED 3
static const double SPACING[3] = {0.7, 0.7, 2.5};

/* Case i: (x, y, z) = (40 + 2i, 36, 12) voxels, a body box (both channels non-zero) with a
 * zero margin, an organ (class 1, an ellipsoid) holding a lesion (class 2, a ball). CT: body
 * 40 HU, organ 120, lesion 200, a few bone voxels at 1500, noise 10 HU; MRI: body 300, organ
 * 600, lesion 900, noise 20, times a per-case gain (z-scored per case). */
static void case_arrays(int i, int64_t sh[3], float **ct, float **mr, uint8_t **lab)
{
    sh[0] = 40 + 2 * i, sh[1] = 36, sh[2] = 12;
    int64_t n = sh[0] * sh[1] * sh[2];
    *ct = dc_calloc_raw((size_t)n, sizeof **ct);
    *mr = dc_calloc_raw((size_t)n, sizeof **mr);
    *lab = dc_calloc_raw((size_t)n, 1);
    ck_assert(*ct && *mr && *lab);
    double gain = 0.5 + 0.3 * i;
    uint64_t r = 12345u + (uint64_t)i * 977u;
    for (int64_t x = 0; x < sh[0]; x++)
        for (int64_t y = 0; y < sh[1]; y++)
            for (int64_t z = 0; z < sh[2]; z++) {
                int64_t v = (x * sh[1] + y) * sh[2] + z;
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                double u = ((double)(r >> 11) / 9007199254740992.0) - 0.5;
                int body = x >= 5 && x < sh[0] - 5 && y >= 4 && y < sh[1] - 6 && z >= 1 && z < 11;
                if (!body) continue;
                double cx = sh[0] / 2.0 + i, dx = (x - cx) / 9.0, dy = (y - 16.0) / 7.0,
                       dz = (z - 6.0) / 3.0;
                double d2 = dx * dx + dy * dy + dz * dz;
                int cls = d2 < 1 ? 1 : 0;
                double lx = (x - cx - 2) / 3.5, ly = (y - 16.0) / 3.5, lz = (z - 6.0) / 1.5;
                if (lx * lx + ly * ly + lz * lz < 1) cls = 2;
                (*lab)[v] = (uint8_t)cls;
                double ctv = cls == 2 ? 200 : cls == 1 ? 120 : 40;
                if (x == 6 && z == 2) ctv = 1500; /* bone: clipped by the plan */
                (*ct)[v] = (float)(ctv + 20 * u);
                double mrv = cls == 2 ? 900 : cls == 1 ? 600 : 300;
                (*mr)[v] = (float)(gain * (mrv + 40 * u));
            }
}

/* A NIfTI with the data set's spacing and an affine with an origin (world = diag * idx + o). */
static void write_nifti(const char *path, int64_t sh[3], const void *data, diffcl_dtype dt)
{
    diffcl_tensor *t = NULL;
    ck_ok(diffcl_tensor_new(ctx, dt, 3, sh, &t));
    memcpy(diffcl_tensor_data(t), data, (size_t)(sh[0] * sh[1] * sh[2]) * diffcl_dtype_size(dt));
    diffcl_image_meta m;
    diffcl_image_meta_init(&m);
    m.ndim = 3;
    for (int a = 0; a < 3; a++) {
        m.spacing[a] = SPACING[a];
        m.affine[a][a] = a == 0 ? -SPACING[a] : SPACING[a]; /* an LPS-like flip of x */
    }
    m.affine[0][3] = 12.5, m.affine[1][3] = -30.25, m.affine[2][3] = 7.0;
    ck_ok(diffcl_nifti_write(t, path, &m));
    diffcl_tensor_free(t);
}

/* The generated nnU-Net v2 raw folder (made once per process). */
static const char *dataset(void)
{
    static char root[64];
    if (root[0]) return root;
    strcpy(root, "/tmp/diffcl_plan_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    char p[256];
    snprintf(p, sizeof p, "%s/imagesTr", root);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/labelsTr", root);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/dataset.json", root);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "{\"channel_names\": {\"0\": \"CT\", \"1\": \"T2\"},\n"
            " \"labels\": {\"background\": 0, \"organ\": 1, \"lesion\": 2},\n"
            " \"numTraining\": %d, \"file_ending\": \".nii.gz\"}\n",
            N_CASES);
    fclose(f);
    for (int i = 0; i < N_CASES; i++) {
        int64_t sh[3];
        float *ct, *mr;
        uint8_t *lab;
        case_arrays(i, sh, &ct, &mr, &lab);
        snprintf(p, sizeof p, "%s/imagesTr/case_%03d_0000.nii.gz", root, i);
        write_nifti(p, sh, ct, DIFFCL_F32);
        snprintf(p, sizeof p, "%s/imagesTr/case_%03d_0001.nii.gz", root, i);
        write_nifti(p, sh, mr, DIFFCL_F32);
        snprintf(p, sizeof p, "%s/labelsTr/case_%03d.nii.gz", root, i);
        write_nifti(p, sh, lab, DIFFCL_U8);
        free(ct);
        free(mr);
        free(lab);
    }
    return root;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, int64_t n, double q)
{
    double pos = q / 100 * (double)(n - 1);
    int64_t i = (int64_t)floor(pos);
    return i >= n - 1 ? v[n - 1] : v[i] + (pos - (double)i) * (v[i + 1] - v[i]);
}

static diffcl_plan *compute_plan(diffcl_dataset **ds_out, const diffcl_plan_options *po)
{
    diffcl_dataset_options dopt = DIFFCL_DATASET_OPTIONS_INIT;
    dopt.layout = DIFFCL_LAYOUT_NNUNET;
    diffcl_dataset *ds = NULL;
    ck_ok(diffcl_dataset_open(ctx, dataset(), &dopt, &ds));
    ck_assert_int_eq(diffcl_dataset_size(ds), N_CASES);
    diffcl_split sp;
    ck_ok(diffcl_dataset_split(ds, N_LABELED, NULL, &sp));
    diffcl_plan *plan = NULL;
    ck_ok(diffcl_plan_compute(ds, &sp, po, &plan));
    diffcl_split_free(&sp);
    *ds_out = ds;
    return plan;
}

/* The rules: CT from channel_names with the labeled cases' foreground statistics, the MRI
 * channel z-scored over the non-zero mask (cropping shrinks the cases by > 25 %), the median
 * spacing; JSON round trip; what apply gives. */
START_TEST(test_plan_rules)
{
    diffcl_dataset *ds = NULL;
    diffcl_plan *plan = compute_plan(&ds, NULL);
    ck_assert_int_eq(diffcl_plan_num_channels(plan), 2);
    ck_assert_int_eq(diffcl_plan_ndim(plan), 3);
    double ts[3];
    ck_assert_int_eq(diffcl_plan_target_spacing(plan, ts), 1);
    for (int a = 0; a < 3; a++) ck_assert_double_eq_tol(ts[a], SPACING[a], 1e-6);
    /* the CT statistics, recomputed here from the labeled cases (0..2) */
    double *fg = NULL;
    int64_t n_fg = 0;
    for (int i = 0; i < N_LABELED; i++) {
        int64_t sh[3];
        float *ct, *mr;
        uint8_t *lab;
        case_arrays(i, sh, &ct, &mr, &lab);
        int64_t n = sh[0] * sh[1] * sh[2];
        fg = dc_realloc(fg, (size_t)(n_fg + n) * sizeof *fg);
        for (int64_t v = 0; v < n; v++)
            if (lab[v]) fg[n_fg++] = ct[v];
        free(ct);
        free(mr);
        free(lab);
    }
    double sum = 0, sum2 = 0;
    for (int64_t v = 0; v < n_fg; v++) sum += fg[v];
    double mean = sum / (double)n_fg;
    for (int64_t v = 0; v < n_fg; v++) sum2 += (fg[v] - mean) * (fg[v] - mean);
    qsort(fg, (size_t)n_fg, sizeof *fg, cmp_d);
    diffcl_plan_channel_info ci = DIFFCL_PLAN_CHANNEL_INFO_INIT, mi = DIFFCL_PLAN_CHANNEL_INFO_INIT;
    ck_ok(diffcl_plan_channel(plan, 0, &ci));
    ck_ok(diffcl_plan_channel(plan, 1, &mi));
    ck_assert_int_eq(ci.scheme, DIFFCL_PLAN_CT);
    ck_assert_double_eq_tol(ci.mean, mean, 1e-6);
    ck_assert_double_eq_tol(ci.std, sqrt(sum2 / (double)n_fg), 1e-6);
    ck_assert_double_eq_tol(ci.clip_lo, pct(fg, n_fg, 0.5), 1e-6);
    ck_assert_double_eq_tol(ci.clip_hi, pct(fg, n_fg, 99.5), 1e-6);
    ck_assert(ci.clip_hi < 1500); /* the bone voxels are clipped */
    free(fg);
    ck_assert_int_eq(mi.scheme, DIFFCL_PLAN_ZSCORE);
    ck_assert_int_eq(mi.use_mask, 1);
    /* JSON round trip */
    char *j1 = NULL, *j2 = NULL;
    diffcl_plan *back = NULL;
    ck_ok(diffcl_plan_to_json(plan, &j1));
    ck_ok(diffcl_plan_from_json(j1, &back));
    ck_ok(diffcl_plan_to_json(back, &j2));
    ck_assert_str_eq(j1, j2);
    diffcl_plan_free(back);
    ck_assert_int_eq(diffcl_plan_from_json("{\"version\": 1}", &back), DIFFCL_ERR_FORMAT);
    ck_assert_ptr_null(back);
    diffcl_plan_string_free(j1);
    diffcl_plan_string_free(j2);
    /* apply: the crop to the body box, CT clipped and normalised, MRI z-scored in the mask */
    diffcl_tensor *img = NULL, *lab = NULL, *pi = NULL, *pl = NULL;
    diffcl_image_meta meta;
    diffcl_image_meta_init(&meta);
    ck_ok(diffcl_dataset_load(ds, 4, &img, &lab, &meta));
    diffcl_plan_geometry g = DIFFCL_PLAN_GEOMETRY_INIT;
    ck_ok(diffcl_plan_apply(plan, img, lab, &meta, &pi, &pl, &g));
    int64_t box_lo[3] = {5, 4, 1}, box_hi[3] = {48 - 5, 36 - 6, 11};
    for (int a = 0; a < 3; a++) {
        ck_assert_int_eq(g.crop_lo[a], box_lo[a]);
        ck_assert_int_eq(g.crop_hi[a], box_hi[a]);
        ck_assert_int_eq(g.planned[a],
                         box_hi[a] - box_lo[a]); /* the median spacing: no resampling */
        ck_assert_int_eq(diffcl_tensor_dim(pi, a + 1), g.planned[a]);
    }
    const float *src = diffcl_tensor_data(img), *dst = diffcl_tensor_data(pi);
    int64_t n_in = diffcl_tensor_numel(img) / 2, n_out = diffcl_tensor_numel(pi) / 2;
    double ms = 0, ms2 = 0;
    for (int64_t x = 0; x < g.planned[0]; x++)
        for (int64_t y = 0; y < g.planned[1]; y++)
            for (int64_t z = 0; z < g.planned[2]; z++) {
                int64_t o = (x * g.planned[1] + y) * g.planned[2] + z;
                int64_t i = ((x + 5) * 36 + y + 4) * 12 + z + 1;
                double v = src[i] < ci.clip_lo   ? ci.clip_lo
                           : src[i] > ci.clip_hi ? ci.clip_hi
                                                 : src[i];
                ck_assert_double_eq_tol(dst[o], (v - ci.mean) / ci.std, 1e-4);
                ms += dst[n_out + o], ms2 += dst[n_out + o] * dst[n_out + o];
                (void)n_in;
            }
    ck_assert_double_eq_tol(ms / (double)n_out, 0, 1e-4);
    ck_assert_double_eq_tol(ms2 / (double)n_out, 1, 1e-3);
    /* the label is cropped alike */
    const uint8_t *ls = diffcl_tensor_data(lab), *ld = diffcl_tensor_data(pl);
    ck_assert_int_eq(ld[(10 * g.planned[1] + 12) * g.planned[2] + 5], ls[(15 * 36 + 16) * 12 + 6]);
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    diffcl_tensor_free(pi);
    diffcl_tensor_free(pl);
    diffcl_plan_free(plan);
    diffcl_dataset_free(ds);
}
END_TEST

/* Resampling to another spacing and back: the planned grid is round(n * spacing / target),
 * the inverted probabilities are on the input grid, background outside the crop, and the
 * label comes back nearly unchanged. */
START_TEST(test_plan_resample_and_invert)
{
    diffcl_dataset *ds = NULL;
    diffcl_plan_options po = DIFFCL_PLAN_OPTIONS_INIT;
    po.target_spacing[0] = po.target_spacing[1] = 1.05;
    po.target_spacing[2] = 2.5;
    diffcl_plan *plan = compute_plan(&ds, &po);
    diffcl_tensor *img = NULL, *lab = NULL, *pi = NULL, *pl = NULL, *inv = NULL, *back = NULL;
    diffcl_image_meta meta;
    diffcl_image_meta_init(&meta);
    ck_ok(diffcl_dataset_load(ds, 1, &img, &lab, &meta));
    diffcl_plan_geometry g = DIFFCL_PLAN_GEOMETRY_INIT;
    ck_ok(diffcl_plan_apply(plan, img, lab, &meta, &pi, &pl, &g));
    int64_t crop[3] = {42 - 10, 36 - 10, 10};
    for (int a = 0; a < 3; a++) {
        int64_t want = llround((double)crop[a] * SPACING[a] / po.target_spacing[a]);
        ck_assert_int_eq(g.planned[a], want);
        ck_assert_int_eq(diffcl_tensor_dim(pl, a), want);
        ck_assert_int_eq(g.shape[a], diffcl_tensor_dim(lab, a));
    }
    /* one-hot probabilities of the planned label, inverted */
    int64_t np = diffcl_tensor_numel(pl), psh[4] = {3, g.planned[0], g.planned[1], g.planned[2]};
    diffcl_tensor *oh = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 4, psh, &oh));
    float *o = diffcl_tensor_data(oh);
    const uint8_t *l = diffcl_tensor_data(pl);
    for (int k = 0; k < 3; k++)
        for (int64_t v = 0; v < np; v++) o[k * np + v] = l[v] == k;
    ck_ok(diffcl_plan_invert(plan, oh, &g, &inv));
    ck_assert_int_eq(diffcl_tensor_ndim(inv), 4);
    for (int a = 0; a < 3; a++) ck_assert_int_eq(diffcl_tensor_dim(inv, a + 1), g.shape[a]);
    ck_ok(diffcl_probs_to_label(inv, &back));
    const uint8_t *a0 = diffcl_tensor_data(lab), *b0 = diffcl_tensor_data(back);
    int64_t n = diffcl_tensor_numel(lab), same = 0, fg = 0, fg_same = 0;
    for (int64_t v = 0; v < n; v++) {
        same += a0[v] == b0[v];
        if (a0[v]) fg++, fg_same += a0[v] == b0[v];
    }
    ck_assert_msg(same > 0.97 * (double)n && fg_same > 0.85 * (double)fg,
                  "label round trip: %lld of %lld voxels, %lld of %lld foreground", (long long)same,
                  (long long)n, (long long)fg_same, (long long)fg);
    ck_assert_int_eq(b0[0], 0); /* outside the crop */
    diffcl_tensor_free(oh);
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    diffcl_tensor_free(pi);
    diffcl_tensor_free(pl);
    diffcl_tensor_free(inv);
    diffcl_tensor_free(back);
    diffcl_plan_free(plan);
    diffcl_dataset_free(ds);
}
END_TEST

static int sorted_has(const float *v, int64_t n, float x)
{
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t m = (lo + hi) / 2;
        if (v[m] < x)
            lo = m + 1;
        else
            hi = m;
    }
    return lo < n && v[lo] == x;
}

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Train on the generated set with the plan (on by default for nnU-Net folders), check that the
 * network's batches hold the planned intensities, then infer a case: the prediction has the
 * input's grid, header and affine. */
START_TEST(test_plan_end_to_end)
{
    char out[64];
    strcpy(out, "/tmp/diffcl_plan_run_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(out));
    diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
    o.layout = "nnunet";
    o.data_dir = dataset();
    o.dims = 3;
    o.labeled = N_LABELED;
    o.patch[0] = 32, o.patch[1] = 16, o.patch[2] = 16;
    o.batch_labeled = 1;
    o.batch_unlabeled = 1;
    o.n_filters = 4;
    o.ds_n_filters = 4;
    o.hfm_levels = 0;
    o.ddim_steps_train = 2;
    o.ddim_steps_eval = 2;
    o.contrast_voxels = 64;
    o.iters = 3;
    o.warmup_frac = 0.34;
    o.rampup_frac = 0.33;
    o.val_every = 1000000;
    o.out_dir = out;
    diffcl_trainer *tr = NULL;
    ck_ok(diffcl_trainer_create(ctx, &o, &tr));
    ck_assert_ptr_nonnull(tr->plan);
    ck_assert_int_eq(tr->o.n_classes, 3);
    /* the batches: every labeled patch voxel is a voxel of its planned case (or padding) */
    diffcl_tensor *batch = NULL, *blab = NULL;
    int64_t idx[2];
    ck_ok(diffcl_sampler_next(tr->sampler, 0, &batch, &blab, idx));
    diffcl_tensor *raw = NULL, *planned = NULL;
    ck_ok(diffcl_dataset_load(tr->train_set, idx[0], &planned, NULL, NULL));
    {
        /* the same case through the plan by hand: equal */
        diffcl_dataset_options dopt = DIFFCL_DATASET_OPTIONS_INIT;
        dopt.layout = DIFFCL_LAYOUT_NNUNET;
        diffcl_dataset *plain = NULL;
        ck_ok(diffcl_dataset_open(ctx, dataset(), &dopt, &plain));
        diffcl_image_meta m;
        diffcl_image_meta_init(&m);
        ck_ok(diffcl_dataset_load(plain, idx[0], &raw, NULL, &m));
        diffcl_tensor *manual = NULL;
        ck_ok(diffcl_plan_apply(tr->plan, raw, NULL, &m, &manual, NULL, NULL));
        ck_assert_int_eq(diffcl_tensor_numel(manual), diffcl_tensor_numel(planned));
        ck_assert(memcmp(diffcl_tensor_data(manual), diffcl_tensor_data(planned),
                         (size_t)diffcl_tensor_numel(planned) * sizeof(float)) == 0);
        diffcl_tensor_free(manual);
        diffcl_dataset_free(plain);
    }
    int64_t per = diffcl_tensor_numel(planned) / 2, pper = 32 * 16 * 16;
    float *vals = dc_malloc((size_t)per * sizeof *vals);
    diffcl_plan_channel_info ci = DIFFCL_PLAN_CHANNEL_INFO_INIT;
    ck_ok(diffcl_plan_channel(tr->plan, 0, &ci));
    for (int c = 0; c < 2; c++) {
        memcpy(vals, (const float *)diffcl_tensor_data(planned) + c * per,
               (size_t)per * sizeof *vals);
        qsort(vals, (size_t)per, sizeof *vals, cmp_f);
        const float *b = (const float *)diffcl_tensor_data(batch) + c * pper;
        for (int64_t v = 0; v < pper; v++)
            ck_assert_msg(b[v] == 0 || sorted_has(vals, per, b[v]),
                          "channel %d: batch value %g is not in the planned case", c, b[v]);
        if (c == 0) /* CT: within the normalised clip range */
            for (int64_t v = 0; v < pper; v++)
                ck_assert(b[v] >= (ci.clip_lo - ci.mean) / ci.std - 1e-4 &&
                          b[v] <= (ci.clip_hi - ci.mean) / ci.std + 1e-4);
    }
    free(vals);
    diffcl_tensor_free(batch);
    diffcl_tensor_free(blab);
    diffcl_tensor_free(raw);
    diffcl_tensor_free(planned);
    ck_ok(diffcl_trainer_run(tr));
    char *want = NULL;
    ck_ok(diffcl_plan_to_json(tr->plan, &want));
    diffcl_trainer_free(tr);

    /* the model file carries the plan; diffcl_model_load still gives the CS */
    char model[128];
    snprintf(model, sizeof model, "%s/model.safetensors", out);
    diffcl_plan *plan = NULL;
    ck_ok(diffcl_plan_load(model, &plan));
    char *got = NULL;
    ck_ok(diffcl_plan_to_json(plan, &got));
    ck_assert_str_eq(got, want);
    diffcl_plan_string_free(got);
    diffcl_plan_string_free(want);
    diffcl_module *cs = NULL;
    ck_ok(diffcl_model_load(ctx, model, &cs));

    /* infer case 5 (unlabeled in training) from its files */
    char p[256];
    diffcl_tensor *ch[2] = {NULL, NULL}, *img = NULL, *label = NULL, *probs = NULL;
    diffcl_image_meta meta, m1;
    diffcl_image_meta_init(&meta);
    diffcl_image_meta_init(&m1);
    for (int c = 0; c < 2; c++) {
        snprintf(p, sizeof p, "%s/imagesTr/case_005_%04d.nii.gz", dataset(), c);
        ck_ok(diffcl_nifti_read(ctx, p, DIFFCL_NIFTI_IMAGE, &ch[c], c ? &m1 : &meta));
    }
    {
        int64_t ish[4] = {2, diffcl_tensor_dim(ch[0], 0), diffcl_tensor_dim(ch[0], 1),
                          diffcl_tensor_dim(ch[0], 2)};
        ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 4, ish, &img));
        int64_t vox = diffcl_tensor_numel(ch[0]);
        for (int c = 0; c < 2; c++)
            memcpy((float *)diffcl_tensor_data(img) + c * vox, diffcl_tensor_data(ch[c]),
                   (size_t)vox * sizeof(float));
    }
    diffcl_sliding_window_options so = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
    so.patch[0] = 32, so.patch[1] = 16, so.patch[2] = 16;
    so.stride[0] = 16, so.stride[1] = 8, so.stride[2] = 8;
    ck_ok(diffcl_segment_planned(cs, plan, img, &meta, &so, &label, &probs));
    for (int a = 0; a < 3; a++) {
        ck_assert_int_eq(diffcl_tensor_dim(label, a), diffcl_tensor_dim(ch[0], a));
        ck_assert_int_eq(diffcl_tensor_dim(probs, a + 1), diffcl_tensor_dim(ch[0], a));
    }
    ck_assert_int_eq(diffcl_tensor_dim(probs, 0), 3);
    /* outside the non-zero box: background */
    ck_assert_int_eq(((const uint8_t *)diffcl_tensor_data(label))[0], 0);
    snprintf(p, sizeof p, "%s/case_005.nii.gz", out);
    ck_ok(diffcl_nifti_write(label, p, &meta));
    diffcl_tensor *pred = NULL;
    diffcl_image_meta pm;
    diffcl_image_meta_init(&pm);
    ck_ok(diffcl_nifti_read(ctx, p, DIFFCL_NIFTI_LABEL, &pred, &pm));
    for (int a = 0; a < 3; a++) {
        ck_assert_int_eq(diffcl_tensor_dim(pred, a), diffcl_tensor_dim(ch[0], a));
        ck_assert_double_eq(pm.spacing[a], meta.spacing[a]);
    }
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) ck_assert_double_eq(pm.affine[r][c], meta.affine[r][c]);
    ck_assert_double_eq_tol(meta.affine[0][3], 12.5, 1e-5);
    ck_assert(pm.has_nifti_header && meta.has_nifti_header);
    /* the header: dims, pixdim and the qform/sform block equal the input's */
    ck_assert(memcmp(pm.nifti_header + 40, meta.nifti_header + 40, 8 * 2) == 0);
    ck_assert(memcmp(pm.nifti_header + 76, meta.nifti_header + 76, 8 * 4) == 0);
    ck_assert(memcmp(pm.nifti_header + 252, meta.nifti_header + 252, 328 - 252) == 0);
    /* a NULL plan is diffcl_segment */
    diffcl_tensor *l1 = NULL, *l2 = NULL;
    ck_ok(diffcl_segment_planned(cs, NULL, img, &meta, &so, &l1, NULL));
    ck_ok(diffcl_segment(cs, img, &so, &l2, NULL));
    ck_assert(memcmp(diffcl_tensor_data(l1), diffcl_tensor_data(l2),
                     (size_t)diffcl_tensor_numel(l1)) == 0);
    diffcl_tensor_free(l1);
    diffcl_tensor_free(l2);
    diffcl_tensor_free(pred);
    for (int c = 0; c < 2; c++) diffcl_tensor_free(ch[c]);
    diffcl_tensor_free(img);
    diffcl_tensor_free(label);
    diffcl_tensor_free(probs);
    diffcl_module_free(cs);
    diffcl_plan_free(plan);
}
END_TEST

/* 2-D: a plan over phantom slices (unit spacing, no dataset.json: z-score channels) with a
 * coarser target; the inverted one-hot label comes back on the slice's grid. */
START_TEST(test_plan_2d)
{
    diffcl_dataset_options dopt = DIFFCL_DATASET_OPTIONS_INIT;
    dopt.layout = DIFFCL_LAYOUT_PHANTOM;
    dopt.n_cases = 3;
    dopt.phantom.ndim = 2;
    dopt.phantom.normalize = 0;
    diffcl_dataset *ds = NULL;
    ck_ok(diffcl_dataset_open(ctx, NULL, &dopt, &ds));
    diffcl_plan_options po = DIFFCL_PLAN_OPTIONS_INIT;
    po.target_spacing[1] = po.target_spacing[2] = 1.5;
    po.interp = DIFFCL_PLAN_INTERP_LINEAR;
    diffcl_plan *plan = NULL;
    ck_ok(diffcl_plan_compute(ds, NULL, &po, &plan));
    ck_assert_int_eq(diffcl_plan_ndim(plan), 2);
    diffcl_plan_channel_info ci = DIFFCL_PLAN_CHANNEL_INFO_INIT;
    ck_ok(diffcl_plan_channel(plan, 0, &ci));
    ck_assert_int_eq(ci.scheme, DIFFCL_PLAN_ZSCORE);
    {
        /* ct_channels forces CT: the statistics of the labels' foreground */
        diffcl_plan_options pc = po;
        pc.ct_channels = 1u;
        diffcl_plan *ct = NULL;
        ck_ok(diffcl_plan_compute(ds, NULL, &pc, &ct));
        diffcl_plan_channel_info cc = DIFFCL_PLAN_CHANNEL_INFO_INIT;
        ck_ok(diffcl_plan_channel(ct, 0, &cc));
        ck_assert_int_eq(cc.scheme, DIFFCL_PLAN_CT);
        ck_assert(cc.clip_lo < cc.mean && cc.mean < cc.clip_hi && cc.std > 0);
        diffcl_plan_free(ct);
    }
    diffcl_tensor *img = NULL, *lab = NULL, *pi = NULL, *pl = NULL, *inv = NULL, *back = NULL;
    diffcl_image_meta meta;
    diffcl_image_meta_init(&meta);
    ck_ok(diffcl_dataset_load(ds, 0, &img, &lab, &meta));
    diffcl_plan_geometry g = DIFFCL_PLAN_GEOMETRY_INIT;
    ck_ok(diffcl_plan_apply(plan, img, lab, &meta, &pi, &pl, &g));
    ck_assert_int_eq(g.ndim, 2);
    ck_assert_int_eq(diffcl_tensor_ndim(pi), 3);
    for (int a = 1; a < 3; a++) {
        int64_t crop = g.crop_hi[a] - g.crop_lo[a];
        ck_assert_int_eq(g.planned[a], llround((double)crop / 1.5));
        ck_assert_int_eq(diffcl_tensor_dim(pi, a), g.planned[a]);
        ck_assert_int_eq(g.shape[a], diffcl_tensor_dim(lab, a - 1));
    }
    int64_t np = diffcl_tensor_numel(pl), psh[3] = {2, g.planned[1], g.planned[2]};
    diffcl_tensor *oh = NULL;
    ck_ok(diffcl_tensor_new(ctx, DIFFCL_F32, 3, psh, &oh));
    float *o = diffcl_tensor_data(oh);
    const uint8_t *l = diffcl_tensor_data(pl);
    for (int k = 0; k < 2; k++)
        for (int64_t v = 0; v < np; v++) o[k * np + v] = l[v] == k;
    ck_ok(diffcl_plan_invert(plan, oh, &g, &inv));
    ck_ok(diffcl_probs_to_label(inv, &back));
    ck_assert_int_eq(diffcl_tensor_dim(back, 0), g.shape[1]);
    ck_assert_int_eq(diffcl_tensor_dim(back, 1), g.shape[2]);
    const uint8_t *a0 = diffcl_tensor_data(lab), *b0 = diffcl_tensor_data(back);
    int64_t n = diffcl_tensor_numel(lab), same = 0;
    for (int64_t v = 0; v < n; v++) same += a0[v] == b0[v];
    ck_assert_msg(same > 0.95 * (double)n, "2-D label round trip: %lld of %lld", (long long)same,
                  (long long)n);
    diffcl_tensor_free(oh);
    diffcl_tensor_free(img);
    diffcl_tensor_free(lab);
    diffcl_tensor_free(pi);
    diffcl_tensor_free(pl);
    diffcl_tensor_free(inv);
    diffcl_tensor_free(back);
    diffcl_plan_free(plan);
    diffcl_dataset_free(ds);
}
END_TEST

/* A model file without a plan (0.1.0, or a run with the plan off): NOT_FOUND, and it loads. */
START_TEST(test_model_without_plan)
{
    diffcl_vnet_options vo = DIFFCL_VNET_OPTIONS_INIT;
    vo.dims = 2;
    vo.n_filters = 4;
    diffcl_module *m = NULL, *back = NULL;
    ck_ok(diffcl_vnet_create(ctx, &vo, &m));
    char path[64];
    strcpy(path, "/tmp/diffcl_plan_model_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_ok(diffcl_model_save(m, path));
    diffcl_plan *plan = (diffcl_plan *)1;
    ck_assert_int_eq(diffcl_plan_load(path, &plan), DIFFCL_ERR_NOT_FOUND);
    ck_assert_ptr_null(plan);
    ck_ok(diffcl_model_load(ctx, path, &back));
    ck_assert_int_eq(diffcl_plan_load("/nonexistent/model.safetensors", &plan), DIFFCL_ERR_IO);
    unlink(path);
    diffcl_module_free(m);
    diffcl_module_free(back);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plan");
    TCase *tc = tcase_create("plan");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_plan_rules);
    tcase_add_test(tc, test_plan_resample_and_invert);
    tcase_add_test(tc, test_plan_2d);
    tcase_add_test(tc, test_model_without_plan);
    tcase_add_test(tc, test_plan_end_to_end);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
