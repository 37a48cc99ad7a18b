/* The Diff-CL trainer: one optimizer over the CS (V-Net + HF-Mamba) and the DS (diffusion
 * denoiser), supervised + cross pseudo supervision + prototype contrastive losses. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "diffcl/loss.h"
#include "layer/module_internal.h"
#include "data/dataset_internal.h"
#include "model/diffusion_internal.h"
#include "train/trainer_internal.h"

/* diffcl_train_options grew after 0.1.0 (strong_unlabeled, pseudo_mask_dice, cps_variant,
 * cps_confidence, ds_pseudo_train_mode, contrast_balanced, weak_strong, hfm_border,
 * init_weights, fg_prob, png_color, label_map, plan, plan_ct_channels, plan_interp: all in
 * DIFFCL_0.2). A program
 * built against 0.1.0 calls the DIFFCL_0.1 version, which fills only the 0.1.0 layout;
 * programs built since bind to the DIFFCL_0.2 default (docs/abi-policy.md). */
__attribute__((visibility("default"))) void dc_train_options_init_v0_1(diffcl_train_options *opts);
void dc_train_options_init_v0_1(diffcl_train_options *opts)
{
    if (!opts) return;
    diffcl_train_options d = DIFFCL_TRAIN_OPTIONS_INIT;
    d.struct_size = offsetof(diffcl_train_options, log_every) + sizeof d.log_every;
    d.n_classes = 2; /* 0.1.0's default; 0 (from dataset.json) came in 0.2 */
    memcpy(opts, &d, d.struct_size);
}
__asm__(".symver dc_train_options_init_v0_1, diffcl_train_options_init@DIFFCL_0.1");

__attribute__((visibility("default"))) void dc_train_options_init_v0_2(diffcl_train_options *opts);
void dc_train_options_init_v0_2(diffcl_train_options *opts)
{
    if (!opts) return;
    diffcl_train_options d = DIFFCL_TRAIN_OPTIONS_INIT;
    *opts = d;
}
__asm__(".symver dc_train_options_init_v0_2, diffcl_train_options_init@@DIFFCL_0.2");

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *dup_or_null(const char *s)
{
    return s ? dc_strdup(s) : NULL;
}

/* The run folder and any missing parents (mkdir -p): `--out runs/heart` on a fresh tree. */
static diffcl_status make_dir(const char *path)
{
    char buf[4096];
    struct stat st;
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "run folder path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0) {
            int e = errno;
            if (stat(buf, &st) != 0)
                return dc_error(DIFFCL_ERR_IO, "cannot create run folder %s: %s: %s", path, buf,
                                strerror(e));
            if (!S_ISDIR(st.st_mode))
                return dc_error(DIFFCL_ERR_IO, "cannot create run folder %s: %s is not a folder",
                                path, buf);
        }
        *p = '/';
    }
    if (mkdir(buf, 0777) == 0) return DIFFCL_OK;
    int e = errno; /* mkdir's reason (a read-only file system), not the stat's that follows */
    if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode)) return DIFFCL_OK;
    return dc_error(DIFFCL_ERR_IO, "cannot create run folder %s: %s", path, strerror(e));
}

/* Resolve defaults that depend on other options. */
static diffcl_status normalise_options(diffcl_train_options *o)
{
    DC_CHECK_ARG(o->out_dir && *o->out_dir, "diffcl_trainer_create: out_dir is required");
    DC_CHECK_ARG(o->dims == 2 || o->dims == 3, "diffcl_trainer_create: dims %d is not 2 or 3",
                 o->dims);
    DC_CHECK_ARG(o->method == DIFFCL_METHOD_DIFFCL || o->method == DIFFCL_METHOD_SUPERVISED,
                 "diffcl_trainer_create: unknown method %d", (int)o->method);
    DC_CHECK_ARG(o->iters >= 1, "diffcl_trainer_create: iters must be >= 1");
    DC_CHECK_ARG(o->batch_labeled >= 1 && o->batch_unlabeled >= 0,
                 "diffcl_trainer_create: need batch_labeled >= 1 and batch_unlabeled >= 0");
    DC_CHECK_ARG(o->labeled >= 1 || o->labeled_list, "diffcl_trainer_create: labeled must be >= 1");
    DC_CHECK_ARG((o->n_classes == 0 || o->n_classes >= 2) && o->n_filters >= 1 &&
                     o->ds_n_filters >= 1,
                 "diffcl_trainer_create: need n_classes 0 (from dataset.json) or >= 2, and "
                 "positive widths");
    DC_CHECK_ARG(o->lr > 0 && o->warmup_frac >= 0 && o->rampup_frac >= 0 &&
                     o->warmup_frac + o->rampup_frac <= 1,
                 "diffcl_trainer_create: need lr > 0 and warmup_frac + rampup_frac <= 1");
    DC_CHECK_ARG(o->tau > 0 && o->bank_momentum >= 0 && o->bank_momentum <= 1,
                 "diffcl_trainer_create: need tau > 0 and bank_momentum in [0,1]");
    DC_CHECK_ARG(o->ddim_steps_train >= 1 && o->ddim_steps_eval >= 1,
                 "diffcl_trainer_create: DDIM steps must be >= 1");
    DC_CHECK_ARG(
        o->cps_variant >= DIFFCL_CPS_AGREEMENT && o->cps_variant <= DIFFCL_CPS_CONFIDENCE,
        "diffcl_trainer_create: cps_variant %d is not agreement (0), plain (1) or confidence (2)",
        (int)o->cps_variant);
    DC_CHECK_ARG(o->plan >= -1 && o->plan <= 1 && o->plan_interp >= 0 && o->plan_interp <= 1,
                 "diffcl_trainer_create: plan must be -1, 0 or 1 and plan_interp 0 or 1");
    DC_CHECK_ARG(o->fg_prob >= 0 && o->fg_prob <= 1,
                 "diffcl_trainer_create: fg_prob %g not in [0, 1]", o->fg_prob);
    DC_CHECK_ARG(o->cps_confidence >= 0 && o->cps_confidence < 1,
                 "diffcl_trainer_create: cps_confidence %g not in [0, 1)", o->cps_confidence);
    if (o->method == DIFFCL_METHOD_DIFFCL && o->batch_unlabeled < 1)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                        "diffcl_trainer_create: Diff-CL needs batch_unlabeled >= 1");
    DC_CHECK_ARG(o->png_color == DIFFCL_PNG_COLOR_L || o->png_color == DIFFCL_PNG_COLOR_RGB,
                 "diffcl_trainer_create: png_color %d is not L (0) or RGB (1)", o->png_color);
    if (o->label_map) {
        int table[256], top = 0;
        diffcl_status s = diffcl_label_map_parse(o->label_map, table, &top);
        if (s != DIFFCL_OK) {
            dc_error_prefix("diffcl_trainer_create");
            return s;
        }
        if (top >= o->n_classes)
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "diffcl_trainer_create: label map '%s' gives class %d, but n_classes "
                            "is %d",
                            o->label_map, top, o->n_classes);
    }
    if (o->patch[1] == 0) {
        if (o->dims == 2) {
            o->patch[0] = 1;
            o->patch[1] = 96;
            o->patch[2] = 96;
        } else {
            o->patch[0] = 112;
            o->patch[1] = 112;
            o->patch[2] = 80;
        }
    }
    if (o->dims == 2) o->patch[0] = 1;
    for (int a = o->dims == 2 ? 1 : 0; a < 3; a++)
        if (o->patch[a] < 16 || o->patch[a] % 16)
            return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                            "diffcl_trainer_create: patch sizes must be multiples of 16 "
                            "(the V-Net halves them four times), got %lld",
                            (long long)o->patch[a]);
    /* batch norm needs two values per channel: at the 1/16 bottleneck a 16-voxel patch has one per image */
    int64_t bottleneck =
        (o->patch[1] / 16) * (o->patch[2] / 16) * (o->dims == 3 ? o->patch[0] / 16 : 1);
    int64_t smallest_batch =
        o->method == DIFFCL_METHOD_DIFFCL && o->batch_unlabeled < o->batch_labeled
            ? o->batch_unlabeled
            : o->batch_labeled;
    if (bottleneck * smallest_batch < 2)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                        "diffcl_trainer_create: a batch of %lld with a patch of 16 voxels "
                        "per axis leaves batch norm one value per channel at the "
                        "bottleneck; use a batch of 2 or a larger patch",
                        (long long)smallest_batch);
    if (o->val_every <= 0) o->val_every = o->iters / 10 > 0 ? o->iters / 10 : 1;
    if (o->log_every <= 0) o->log_every = 10;
    if (o->method == DIFFCL_METHOD_SUPERVISED) o->batch_unlabeled = 0;
    return DIFFCL_OK;
}

/* Labeled / unlabeled split of the training cases, leaving out the validation cases: the
 * layout's training list usually holds them too, and an unlabeled validation case would still
 * be trained on (its image, through the pseudo labels), inflating the validation Dice.
 * Without a labeled list the labeled cases are the first N of the rest in id order. */
static diffcl_status split_without_validation(diffcl_trainer *tr)
{
    const diffcl_train_options *o = &tr->o;
    const diffcl_dataset *ds = tr->train_set;
    int64_t n = diffcl_dataset_size(ds), n_val = 0;
    for (int64_t i = 0; tr->val_set && i < n; i++)
        n_val += diffcl_dataset_find(tr->val_set, diffcl_dataset_case_id(ds, i)) >= 0;
    if (n_val == 0) return diffcl_dataset_split(ds, o->labeled, o->labeled_list, &tr->split);
    diffcl_split all;
    /* with a labeled list: its split; without: every case "labeled", i.e. all of them in id order */
    DC_TRY(diffcl_dataset_split(ds, o->labeled_list ? 0 : n, o->labeled_list, &all));
    diffcl_split *sp = &tr->split;
    sp->labeled = dc_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    sp->unlabeled = dc_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    diffcl_status s = DIFFCL_OK;
    if (!sp->labeled || !sp->unlabeled)
        s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "splitting the data: out of memory");
    for (int64_t k = 0; k < all.n_labeled && s == DIFFCL_OK; k++) {
        int64_t i = all.labeled[k];
        const char *id = diffcl_dataset_case_id(ds, i);
        int in_val = diffcl_dataset_find(tr->val_set, id) >= 0;
        if (o->labeled_list && in_val)
            s = dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                         "case '%s' is in both the labeled list %s and the validation "
                         "list %s",
                         id, o->labeled_list, o->val_list);
        else if (!in_val && (o->labeled_list || sp->n_labeled < o->labeled))
            sp->labeled[sp->n_labeled++] = i;
        else if (!in_val)
            sp->unlabeled[sp->n_unlabeled++] = i;
    }
    for (int64_t k = 0; k < all.n_unlabeled && s == DIFFCL_OK; k++) {
        int64_t i = all.unlabeled[k];
        if (diffcl_dataset_find(tr->val_set, diffcl_dataset_case_id(ds, i)) < 0)
            sp->unlabeled[sp->n_unlabeled++] = i;
    }
    if (s == DIFFCL_OK && !o->labeled_list && sp->n_labeled < o->labeled)
        s = dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                     "%lld labeled cases requested, but only %lld training cases are "
                     "not in the validation list %s",
                     (long long)o->labeled, (long long)sp->n_labeled, o->val_list);
    diffcl_split_free(&all);
    if (s != DIFFCL_OK) {
        diffcl_split_free(sp);
        return s;
    }
    dc_log(tr->ctx, DIFFCL_LOG_INFO,
           "%lld validation case(s) of the training list left out of training", (long long)n_val);
    return DIFFCL_OK;
}

/* The preprocessing plan (o->plan; -1: on for the NIfTI layouts) from the training split,
 * applied by the training and validation sets from now on. */
static diffcl_status make_plan(diffcl_trainer *tr)
{
    diffcl_train_options *o = &tr->o;
    diffcl_layout layout = diffcl_dataset_layout(tr->train_set);
    if (o->plan < 0) o->plan = layout == DIFFCL_LAYOUT_MSD || layout == DIFFCL_LAYOUT_NNUNET;
    if (!o->plan) return DIFFCL_OK;
    diffcl_plan_options po = DIFFCL_PLAN_OPTIONS_INIT;
    po.ct_channels = o->plan_ct_channels;
    po.interp = o->plan_interp;
    diffcl_status s = diffcl_plan_compute(tr->train_set, &tr->split, &po, &tr->plan);
    if (s != DIFFCL_OK) {
        dc_error_prefix("preprocessing plan");
        return s;
    }
    double sp[3];
    int rs = diffcl_plan_target_spacing(tr->plan, sp);
    char line[512];
    int n = snprintf(line, sizeof line, "preprocessing plan: target spacing %g x %g x %g%s:", sp[0],
                     sp[1], sp[2], rs ? "" : " (not resampled)");
    for (int c = 0; c < diffcl_plan_num_channels(tr->plan) && n > 0 && n < (int)sizeof line; c++) {
        diffcl_plan_channel_info ci = DIFFCL_PLAN_CHANNEL_INFO_INIT;
        (void)diffcl_plan_channel(tr->plan, c, &ci);
        if (ci.scheme == DIFFCL_PLAN_CT)
            n += snprintf(line + n, sizeof line - (size_t)n,
                          "%s channel %d CT (clip %g..%g, mean %g, std %g)", c ? ";" : "", c,
                          ci.clip_lo, ci.clip_hi, ci.mean, ci.std);
        else
            n += snprintf(line + n, sizeof line - (size_t)n, "%s channel %d %s%s", c ? ";" : "", c,
                          ci.scheme == DIFFCL_PLAN_NONE ? "unchanged" : "z-score",
                          ci.use_mask ? " (non-zero mask)" : "");
    }
    dc_log(tr->ctx, DIFFCL_LOG_INFO, "%s", line);
    dc_dataset_set_plan(tr->train_set, tr->plan);
    if (tr->val_set) dc_dataset_set_plan(tr->val_set, tr->plan);
    return DIFFCL_OK;
}

static diffcl_status open_data(diffcl_trainer *tr)
{
    const diffcl_train_options *o = &tr->o;
    diffcl_dataset_options dopt = DIFFCL_DATASET_OPTIONS_INIT;
    diffcl_read_options ro = DIFFCL_READ_OPTIONS_INIT;
    ro.png_color = o->png_color;
    ro.label_map = o->label_map;
    ro.reorient_ras = o->reorient_ras;
    diffcl_layout layout;
    DC_TRY(diffcl_layout_parse(o->layout ? o->layout : "phantom", &layout));
    dopt.layout = layout;
    dopt.list = o->train_list;
    dopt.phantom.ndim = o->dims;
    dopt.phantom.seed = o->seed;
    dopt.n_cases = o->phantom_cases;
    if (layout != DIFFCL_LAYOUT_PHANTOM && !o->data_dir)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT, "layout %s needs a data folder", o->layout);
    DC_TRY(diffcl_dataset_open_ex(tr->ctx, layout == DIFFCL_LAYOUT_PHANTOM ? NULL : o->data_dir,
                                  &dopt, &ro, &tr->train_set));
    if (o->val_list) {
        diffcl_dataset_options vopt = dopt;
        if (layout == DIFFCL_LAYOUT_PHANTOM) {
            /* phantom: --val-list N means N held-out cases generated past the training ones */
            vopt.list = NULL;
            vopt.n_cases = atoll(o->val_list) > 0 ? atoll(o->val_list) : 8;
            vopt.first_case = 100000;
        } else {
            vopt.list = o->val_list;
        }
        DC_TRY(diffcl_dataset_open_ex(tr->ctx, layout == DIFFCL_LAYOUT_PHANTOM ? NULL : o->data_dir,
                                      &vopt, &ro, &tr->val_set));
    }
    DC_TRY(split_without_validation(tr));
    DC_TRY(make_plan(tr));
    if (o->method == DIFFCL_METHOD_DIFFCL && tr->split.n_unlabeled == 0)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                        "Diff-CL needs unlabeled cases: all %lld training cases are "
                        "labeled",
                        (long long)tr->split.n_labeled);
    return dc_trainer_set_shard(tr, 0, 1); /* the sampler */
}

diffcl_status dc_trainer_set_shard(diffcl_trainer *tr, int rank, int size)
{
    DC_CHECK_ARG(tr && size >= 1 && rank >= 0 && rank < size, "dc_trainer_set_shard: rank %d of %d",
                 rank, size);
    const diffcl_train_options *o = &tr->o;
    int bl = o->batch_labeled, bu = o->batch_unlabeled;
    /* the same seeded sampler on every rank, with the global batch (a pure function of the seed
     * and the iteration, keyed by each sample's global slot); each rank keeps its shard */
    diffcl_sampler_options so = DIFFCL_SAMPLER_OPTIONS_INIT;
    so.seed = o->seed;
    for (int a = 0; a < 3; a++) so.patch[a] = o->patch[a];
    so.batch_labeled = bl * size;
    so.batch_unlabeled = bu * size;
    so.prefetch = 2;
    so.strong_unlabeled = o->method == DIFFCL_METHOD_DIFFCL && o->strong_unlabeled;
    so.augment.fg_prob = o->fg_prob; /* the sampler applies it to labeled patches only */
    uint32_t *sl = dc_malloc(sizeof *sl * (size_t)(bl > 0 ? bl : 1));
    uint32_t *su = dc_malloc(sizeof *su * (size_t)(bu > 0 ? bu : 1));
    uint32_t *scs = dc_malloc(sizeof *scs * (size_t)(bl + bu > 0 ? bl + bu : 1));
    diffcl_sampler *sm = NULL;
    diffcl_status s =
        sl && su && scs ? DIFFCL_OK : dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "trainer: out of memory");
    DC_STEP(diffcl_sampler_create(tr->train_set, &tr->split, &so, &sm));
    if (s != DIFFCL_OK) {
        free(sl);
        free(su);
        free(scs);
        return s;
    }
    for (int n = 0; n < bl; n++) scs[n] = sl[n] = (uint32_t)(rank + n * size);
    for (int n = 0; n < bu; n++) {
        su[n] = (uint32_t)(rank + n * size);
        scs[bl + n] = (uint32_t)(bl * size) + su[n]; /* the CS sees the labeled half first */
    }
    diffcl_sampler_free(tr->sampler);
    tr->sampler = sm;
    free(tr->samples_l);
    free(tr->samples_u);
    free(tr->samples_cs);
    tr->samples_l = sl;
    tr->samples_u = su;
    tr->samples_cs = scs;
    tr->shard_rank = rank;
    tr->shard_size = size;
    return DIFFCL_OK;
}

/* n_classes 0 (the default): the classes of the data set's dataset.json, else 2. A count
 * given that contradicts dataset.json is an error. */
static diffcl_status classes_from_data(diffcl_trainer *tr)
{
    int k = diffcl_dataset_num_classes(tr->train_set);
    if (tr->o.n_classes == 0) {
        tr->o.n_classes = k >= 2 ? k : 2;
        return DIFFCL_OK;
    }
    if (k >= 2 && k != tr->o.n_classes)
        return dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                        "the data set's dataset.json lists %d classes (background included), "
                        "but n_classes is %d (diffcl train --classes)",
                        k, tr->o.n_classes);
    return DIFFCL_OK;
}

/* The first labeled case's label map against n_classes: a clear error (naming the case and
 * suggesting a label map for masks) before the loss meets it. */
static diffcl_status check_label_values(const diffcl_trainer *tr, const diffcl_tensor *lab)
{
    if (!lab || lab->dtype != DIFFCL_U8) return DIFFCL_OK;
    const uint8_t *d = dc_data(lab);
    int top = 0;
    for (int64_t i = 0; i < dc_numel(lab); i++)
        if (d[i] > top) top = d[i];
    if (top < tr->o.n_classes) return DIFFCL_OK;
    int64_t c = tr->split.labeled[0];
    return dc_error(DIFFCL_ERR_FORMAT, "case '%s': its label has value %d, but n_classes is %d%s",
                    diffcl_dataset_case_id(tr->train_set, c), top, tr->o.n_classes,
                    diffcl_dataset_layout(tr->train_set) == DIFFCL_LAYOUT_PNG && top == 255 &&
                            !tr->o.label_map
                        ? " (a 0/255 mask? give the label map \"255:1\", diffcl train "
                          "--label-map 255:1)"
                        : "");
}

static diffcl_status build_networks(diffcl_trainer *tr)
{
    const diffcl_train_options *o = &tr->o;
    int in_ch = 1;
    {
        /* the image channels of the data set decide the networks' input width */
        diffcl_tensor *img = NULL, *lab = NULL;
        DC_TRY(diffcl_dataset_load(tr->train_set, tr->split.labeled[0], &img, &lab, NULL));
        in_ch = (int)diffcl_tensor_dim(img, 0);
        diffcl_status s = check_label_values(tr, lab);
        if (s != DIFFCL_OK) {
            diffcl_tensor_free(img);
            diffcl_tensor_free(lab);
            return s;
        }
        diffcl_tensor_free(img);
        diffcl_tensor_free(lab);
    }
    diffcl_vnet_options vo = DIFFCL_VNET_OPTIONS_INIT;
    vo.dims = o->dims;
    vo.in_channels = in_ch;
    vo.n_classes = o->n_classes;
    vo.n_filters = o->n_filters;
    vo.hf_mamba_levels = o->hfm_levels;
    vo.hfm_border = o->hfm_border;
    vo.seed = o->seed;
    DC_TRY(diffcl_vnet_create(tr->ctx, &vo, &tr->cs));
    diffcl_param_group_options go = DIFFCL_PARAM_GROUP_OPTIONS_INIT;
    go.lr = o->lr;
    go.momentum = o->momentum;
    go.nesterov = o->momentum > 0;
    go.weight_decay = o->weight_decay;
    DC_TRY(diffcl_optimizer_create(tr->ctx, DIFFCL_OPTIM_SGD, &tr->opt));
    DC_TRY(diffcl_optimizer_add_module(tr->opt, tr->cs, &go, 0, NULL));
    if (o->method == DIFFCL_METHOD_DIFFCL) {
        diffcl_diffusion_options dop = DIFFCL_DIFFUSION_OPTIONS_INIT;
        dop.dims = o->dims;
        dop.in_channels = in_ch;
        dop.n_classes = o->n_classes;
        dop.n_filters = o->ds_n_filters;
        dop.seed = o->seed + 1;
        DC_TRY(diffcl_diffusion_create(tr->ctx, &dop, &tr->ds));
        DC_TRY(diffcl_optimizer_add_module(tr->opt, tr->ds, &go, 0, NULL));
        int64_t bs[2] = {o->n_classes, o->n_filters};
        tr->bank = dc_tensor_new(tr->ctx, DIFFCL_F32, 2, bs);
        if (!tr->bank) return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    return DIFFCL_OK;
}

diffcl_status diffcl_trainer_create(diffcl_context *ctx, const diffcl_train_options *opts,
                                    diffcl_trainer **out)
{
    return dc_trainer_create(ctx, opts, 1, out);
}

diffcl_status dc_trainer_create(diffcl_context *ctx, const diffcl_train_options *opts, int fresh,
                                diffcl_trainer **out)
{
    DC_CHECK_ARG(out, "diffcl_trainer_create: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx && opts, "diffcl_trainer_create: NULL argument");
    diffcl_train_options o = DIFFCL_TRAIN_OPTIONS_INIT;
    DC_TRY(dc_options_read(&o, sizeof o, opts, offsetof(diffcl_train_options, val_every), 0,
                           "diffcl_trainer_create"));
    diffcl_trainer *tr = dc_calloc_raw(1, sizeof *tr);
    if (!tr) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_trainer_create: out of memory");
    tr->ctx = ctx;
    const char *profile = getenv("DIFFCL_PROFILE");
    tr->profile = profile && !strcmp(profile, "1");
    /* own copies of the strings */
    tr->s_layout = dup_or_null(o.layout ? o.layout : "phantom");
    tr->s_data_dir = dup_or_null(o.data_dir);
    tr->s_train_list = dup_or_null(o.train_list);
    tr->s_val_list = dup_or_null(o.val_list);
    tr->s_labeled_list = dup_or_null(o.labeled_list);
    tr->s_out_dir = dup_or_null(o.out_dir);
    tr->s_init_weights = o.init_weights && *o.init_weights ? dc_strdup(o.init_weights) : NULL;
    tr->s_label_map = o.label_map && *o.label_map ? dc_strdup(o.label_map) : NULL;
    if (!tr->s_layout || (o.data_dir && !tr->s_data_dir) || (o.train_list && !tr->s_train_list) ||
        (o.val_list && !tr->s_val_list) || (o.labeled_list && !tr->s_labeled_list) ||
        (o.out_dir && !tr->s_out_dir) ||
        (o.init_weights && *o.init_weights && !tr->s_init_weights) ||
        (o.label_map && *o.label_map && !tr->s_label_map)) {
        diffcl_trainer_free(tr);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_trainer_create: out of memory");
    }
    o.layout = tr->s_layout;
    o.data_dir = tr->s_data_dir;
    o.train_list = tr->s_train_list;
    o.val_list = tr->s_val_list;
    o.labeled_list = tr->s_labeled_list;
    o.out_dir = tr->s_out_dir;
    o.init_weights = tr->s_init_weights;
    o.label_map = tr->s_label_map;
    tr->o = o;
    tr->best_dice = NAN;
    tr->best_it = -1;
    diffcl_status s = normalise_options(&tr->o);
    if (s == DIFFCL_OK) s = open_data(tr);
    if (s == DIFFCL_OK) s = classes_from_data(tr);
    if (s == DIFFCL_OK) s = build_networks(tr);
    if (s == DIFFCL_OK && fresh && tr->o.init_weights) s = dc_trainer_load_init_weights(tr);
    if (s == DIFFCL_OK)
        s = make_dir(tr->o.out_dir); /* last: a run that cannot start leaves no folder */
    if (s != DIFFCL_OK) {
        diffcl_trainer_free(tr);
        return s;
    }
    *out = tr;
    return DIFFCL_OK;
}

/* DIFFCL_PROFILE=1: the mean time of each part of a step, at the INFO level. */
static void print_profile(diffcl_trainer *tr)
{
    if (!tr->profile || tr->prof_steps == 0) return;
    static const char *const names[PROF_N] = {
        "batch",    "CS forward + supervised", "DS supervised", "pseudo labels", "unlabeled losses",
        "backward", "optimizer step"};
    char line[512];
    int n = snprintf(line, sizeof line,
                     "time per step over %lld steps (ms):", (long long)tr->prof_steps);
    for (int k = 0; k < PROF_N && n > 0 && n < (int)sizeof line; k++)
        n += snprintf(line + n, sizeof line - (size_t)n, "%s %s %.1f", k ? "," : "", names[k],
                      1000.0 * tr->prof[k] / (double)tr->prof_steps);
    dc_log(tr->ctx, DIFFCL_LOG_INFO, "%s", line);
}

/* Adds the time since the last mark to part k. */
static void prof_mark(diffcl_trainer *tr, int k)
{
    if (!tr->profile) return;
    double now = now_seconds();
    tr->prof[k] += now - tr->prof_t;
    tr->prof_t = now;
}

void diffcl_trainer_free(diffcl_trainer *tr)
{
    if (!tr) return;
    print_profile(tr);
    dc_dist_free(tr->dist); /* MPI: before the parameters it hooks */
    diffcl_sampler_free(tr->sampler);
    diffcl_split_free(&tr->split);
    diffcl_dataset_free(tr->train_set);
    diffcl_dataset_free(tr->val_set);
    diffcl_plan_free(tr->plan); /* after the data sets that borrow it */
    diffcl_optimizer_free(tr->opt);
    diffcl_module_free(tr->cs);
    diffcl_module_free(tr->ds);
    diffcl_tensor_free(tr->bank);
    free(tr->loss_hist);
    free(tr->val_it);
    free(tr->val_dice);
    free(tr->s_layout);
    free(tr->s_data_dir);
    free(tr->s_train_list);
    free(tr->s_val_list);
    free(tr->s_labeled_list);
    free(tr->s_out_dir);
    free(tr->s_init_weights);
    free(tr->s_label_map);
    free(tr->samples_l);
    free(tr->samples_u);
    free(tr->samples_cs);
    free(tr);
}

int64_t diffcl_trainer_iteration(const diffcl_trainer *tr)
{
    return tr ? tr->it : 0;
}
diffcl_module *diffcl_trainer_cs(const diffcl_trainer *tr)
{
    return tr ? tr->cs : NULL;
}
diffcl_module *diffcl_trainer_ds(const diffcl_trainer *tr)
{
    return tr ? tr->ds : NULL;
}
double diffcl_trainer_best_dice(const diffcl_trainer *tr)
{
    return tr ? tr->best_dice : NAN;
}

/* ------------------------------------------------------------- one step ---- */

/* Ramp-up factor in [0,1]: 0 during warm-up, then the sigmoid ramp over rampup iterations. */
static double ramp(const diffcl_train_options *o, int64_t it)
{
    double warm = o->warmup_frac * (double)o->iters, len = o->rampup_frac * (double)o->iters;
    if ((double)it < warm) return 0.0;
    if (len <= 0) return 1.0;
    return diffcl_rampup_sigmoid(1.0, (double)it - warm, len);
}

/* acc = acc + w * term (replacing acc), keeping the graph. */
static diffcl_status accumulate(diffcl_tensor **acc, diffcl_tensor *term, double w)
{
    diffcl_tensor *scaled = NULL, *sum = NULL;
    diffcl_status s = diffcl_affine(term, w, 0.0, &scaled);
    if (s == DIFFCL_OK) {
        if (*acc) {
            s = diffcl_add(*acc, scaled, &sum);
            diffcl_tensor_free(scaled);
        } else
            sum = scaled;
    }
    if (s == DIFFCL_OK) {
        diffcl_tensor_free(*acc);
        *acc = sum;
    }
    return s;
}

/* Append to the loss curve of curves.png (a point is dropped if memory runs out: the plot
 * is a report, not state). */
void dc_trainer_push_loss(diffcl_trainer *tr, double loss)
{
    if (tr->n_loss == tr->cap_loss) {
        int64_t cap = tr->cap_loss ? tr->cap_loss * 2 : 256;
        double *h = dc_realloc(tr->loss_hist, (size_t)cap * sizeof *h);
        if (!h) return;
        tr->loss_hist = h;
        tr->cap_loss = cap;
    }
    tr->loss_hist[tr->n_loss++] = loss;
}

static double item(const diffcl_tensor *t)
{
    double v = NAN;
    if (t) diffcl_tensor_item(t, &v);
    return v;
}

/* Everything one iteration creates, released together. */
typedef struct step_vars {
    diffcl_tensor *image, *label, *logits, *feat, *lab_logits, *unl_logits, *img_l, *img_u;
    diffcl_tensor *cs_sup, *ds_sup, *ds_pseudo, *cs_pseudo, *contrast, *total;
    diffcl_tensor *pseudo_cs, *pseudo_ds, *ds_logits, *agree, *feat_l, *feat_u, *feat_l_det;
    diffcl_tensor *protos, *counts, *voxels, *pseudo_cs_u8, *ds_probs, *weak, *weak_logits;
} step_vars;

static void step_vars_free(step_vars *v)
{
    diffcl_tensor **p = (diffcl_tensor **)v;
    for (size_t i = 0; i < sizeof *v / sizeof *p; i++) diffcl_tensor_free(p[i]);
}

/* The unlabeled half: cross pseudo supervision both ways and the contrastive term. */
static diffcl_status unlabeled_terms(diffcl_trainer *tr, step_vars *v, uint32_t it,
                                     double *agreement, double *fg)
{
    const diffcl_train_options *o = &tr->o;
    int64_t bl = o->batch_labeled, bu = o->batch_unlabeled;
    diffcl_context *ctx = tr->ctx;
    DC_TRY(diffcl_tensor_narrow(v->logits, 0, bl, bu, &v->unl_logits));
    DC_TRY(diffcl_tensor_narrow(v->image, 0, bl, bu, &v->img_u));
    /* pseudo labels, without gradients: CS argmax, and the DS's DDIM sample from noise. The DS
     * samples in evaluation mode: running statistics, no dropout, and its pure-noise inputs
     * leave the running statistics alone (batch norm updates them even without gradients). */
    int prev = diffcl_set_grad_enabled(ctx, 0);
    diffcl_status s = DIFFCL_OK;
    const diffcl_tensor *teacher_in = v->img_u, *cs_out = v->unl_logits;
    if (v->weak) { /* weak/strong: the pseudo labels come from the weak view, in evaluation mode */
        teacher_in = v->weak;
        diffcl_module_train(tr->cs, 0);
        dc_module_set_samples(tr->cs, tr->samples_u, bu);
        s = diffcl_vnet_forward(tr->cs, v->weak, &v->weak_logits, NULL);
        diffcl_module_train(tr->cs, 1);
        cs_out = v->weak_logits;
    }
    if (s == DIFFCL_OK) s = diffcl_argmax(cs_out, 1, 0, &v->pseudo_cs);
    /* every per-sample draw of the unlabeled half is keyed by its global index samples_u */
    dc_module_set_samples(tr->ds, tr->samples_u, bu);
    if (s == DIFFCL_OK) {
        diffcl_diffusion_sample_options so = DIFFCL_DIFFUSION_SAMPLE_OPTIONS_INIT;
        so.steps = o->ddim_steps_train;
        so.key = diffcl_rng_key_make(o->seed, STREAM_DDIM, 0, it);
        if (!o->ds_pseudo_train_mode) diffcl_module_train(tr->ds, 0);
        s = dc_diffusion_sample_rows(tr->ds, teacher_in, &so, tr->samples_u, &v->ds_logits);
        diffcl_module_train(tr->ds, 1);
    }
    if (s == DIFFCL_OK)
        s = diffcl_diffusion_pseudo_label(v->ds_logits, &v->pseudo_ds, &v->ds_probs);
    /* agreement mask (F32 1/0) and statistics */
    if (s == DIFFCL_OK) {
        v->agree = dc_tensor_empty(ctx, DIFFCL_F32, v->pseudo_cs->ndim, v->pseudo_cs->shape);
        if (!v->agree) s = DIFFCL_ERR_OUT_OF_MEMORY;
    }
    if (s == DIFFCL_OK) {
        int64_t n = dc_numel(v->agree), n_agree = 0, n_fg = 0;
        const int64_t *a = dc_data(v->pseudo_cs), *b = dc_data(v->pseudo_ds);
        float *m = dc_f32(v->agree);
        for (int64_t i = 0; i < n; i++) {
            m[i] = a[i] == b[i] ? 1.0f : 0.0f;
            n_agree += a[i] == b[i];
            n_fg += a[i] != 0;
        }
        *agreement = n ? (double)n_agree / (double)n : 0;
        *fg = n ? (double)n_fg / (double)n : 0;
    }
    diffcl_set_grad_enabled(ctx, prev);
    if (s != DIFFCL_OK) return s;
    prof_mark(tr, PROF_PSEUDO);

    /* L^d_p: the DS learns the CS's pseudo label from its noised version (on the strong view) */
    DC_TRY(dc_diffusion_loss_rows(tr->ds, v->img_u, v->pseudo_cs,
                                  diffcl_rng_key_make(o->seed, STREAM_DS_PSEUDO, 0, it),
                                  tr->samples_u, NULL, &v->ds_pseudo, NULL));
    /* L^c_p: the CS learns the DS's pseudo label, weighted as the variant says */
    DC_TRY(dc_cs_pseudo_loss(o, v->unl_logits, v->pseudo_ds, v->ds_probs, v->agree, &v->cs_pseudo));
    /* L_cl: prototypes of the labeled features (EMA bank), InfoNCE on unlabeled voxels labeled
     * by the DS (the agreeing ones only in the agreement variant). With eta 0 its weight is 0:
     * skipping it changes no weight (its gradient would be exact zeros) and saves its time. */
    if (o->eta == 0) return DIFFCL_OK;
    DC_TRY(diffcl_tensor_narrow(v->feat, 0, 0, bl, &v->feat_l));
    DC_TRY(diffcl_tensor_narrow(v->feat, 0, bl, bu, &v->feat_u));
    DC_TRY(diffcl_tensor_detach(v->feat_l, &v->feat_l_det));
    DC_TRY(diffcl_class_prototypes(v->feat_l_det, v->label, NULL, o->n_classes, &v->protos,
                                   &v->counts));
    if (tr->dist) /* MPI: prototypes of all ranks' labeled voxels */
        DC_TRY(dc_dist_prototypes(tr->dist, v->feat_l_det, v->label, o->n_classes, v->protos,
                                  v->counts));
    DC_TRY(diffcl_prototype_bank_update(tr->bank, v->protos, v->counts, o->bank_momentum));
    DC_TRY(dc_contrast_voxels(o, o->cps_variant == DIFFCL_CPS_AGREEMENT ? v->agree : NULL,
                              v->pseudo_ds, tr->samples_u, it, &v->voxels));
    if (dc_numel(v->voxels) > 0) {
        diffcl_proto_contrast_options po = DIFFCL_PROTO_CONTRAST_OPTIONS_INIT;
        po.temperature = o->tau;
        po.indices = v->voxels;
        DC_TRY(diffcl_proto_contrast_loss(v->feat_u, tr->bank, v->pseudo_ds, &po, &v->contrast));
    }
    return DIFFCL_OK;
}

/* This iteration's batch (with the weak views when the pseudo labels come from them) into @p v;
 * with a shard (MPI), this rank's rows r, r+S, ... of each half of the global batch. */
static diffcl_status next_batch(diffcl_trainer *tr, uint32_t it, step_vars *v)
{
    const diffcl_train_options *o = &tr->o;
    diffcl_status s;
    if (o->method == DIFFCL_METHOD_DIFFCL && o->weak_strong) {
        diffcl_sampler_views views = DIFFCL_SAMPLER_VIEWS_INIT;
        s = diffcl_sampler_next_views(tr->sampler, it, &views, NULL);
        v->image = views.image, v->weak = views.weak, v->label = views.label;
    } else {
        s = diffcl_sampler_next(tr->sampler, it, &v->image, &v->label, NULL);
    }
    if (s == DIFFCL_OK &&
        v->image->ndim != o->dims + 2) /* 3-D volumes read with dims 2 (the default) */
        s = dc_error(DIFFCL_ERR_INVALID_ARGUMENT,
                     "the data set holds %d-D images but the trainer's dims is %d "
                     "(diffcl train --dims %d)",
                     v->image->ndim - 2, o->dims, v->image->ndim - 2);
    if (s == DIFFCL_OK && tr->shard_size > 1) { /* this rank's shard r, r+S, ... */
        diffcl_tensor *gi = v->image, *gl = v->label;
        v->image = v->label = NULL;
        s = dc_dist_shard(tr->shard_rank, tr->shard_size, o->batch_labeled, o->batch_unlabeled, gi,
                          gl, &v->image, &v->label);
        diffcl_tensor_free(gi);
        diffcl_tensor_free(gl);
        if (s == DIFFCL_OK && v->weak) { /* the weak views: the same unlabeled rows */
            diffcl_tensor *gw = v->weak;
            v->weak = NULL;
            s = dc_dist_shard(tr->shard_rank, tr->shard_size, 0, o->batch_unlabeled, gw, NULL,
                              &v->weak, NULL);
            diffcl_tensor_free(gw);
        }
    }
    return s;
}

diffcl_status diffcl_trainer_step(diffcl_trainer *tr, diffcl_train_stats *stats)
{
    DC_CHECK_ARG(tr, "diffcl_trainer_step: trainer is NULL");
    const diffcl_train_options *o = &tr->o;
    dc_threads_adapt(tr->ctx); /* a default thread count follows the load (thread_adapt.c) */
    double t0 = now_seconds();
    tr->prof_t = t0;
    uint32_t it = (uint32_t)tr->it;
    diffcl_train_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    st.cs_pseudo = st.ds_pseudo = st.contrast = st.ds_sup = NAN;
    step_vars v;
    memset(&v, 0, sizeof v);
    diffcl_status s = next_batch(tr, it, &v);
    prof_mark(tr, PROF_BATCH);
    diffcl_module_train(tr->cs, 1);
    diffcl_module_set_step(tr->cs, it);
    if (tr->ds) {
        diffcl_module_train(tr->ds, 1);
        diffcl_module_set_step(tr->ds, it);
    }
    diffcl_set_grad_enabled(tr->ctx, 1);
    double mu = ramp(o, tr->it);
    st.mu = mu;
    /* CS on the whole batch: supervised Dice + CE on the labeled half */
    dc_module_set_samples(tr->cs, tr->samples_cs, o->batch_labeled + o->batch_unlabeled);
    if (s == DIFFCL_OK) s = diffcl_vnet_forward(tr->cs, v.image, &v.logits, &v.feat);
    if (s == DIFFCL_OK) s = diffcl_tensor_narrow(v.logits, 0, 0, o->batch_labeled, &v.lab_logits);
    if (s == DIFFCL_OK) s = diffcl_dice_ce_loss(v.lab_logits, v.label, NULL, &v.cs_sup, NULL);
    if (s == DIFFCL_OK) s = accumulate(&v.total, v.cs_sup, 1.0);
    prof_mark(tr, PROF_CS);
    if (tr->ds) {
        /* DS supervised: x_t from the labels, Dice + CE on its x_0 logits */
        if (s == DIFFCL_OK) s = diffcl_tensor_narrow(v.image, 0, 0, o->batch_labeled, &v.img_l);
        dc_module_set_samples(tr->ds, tr->samples_l, o->batch_labeled);
        if (s == DIFFCL_OK)
            s = dc_diffusion_loss_rows(tr->ds, v.img_l, v.label,
                                       diffcl_rng_key_make(o->seed, STREAM_DS_SUP, 0, it),
                                       tr->samples_l, NULL, &v.ds_sup, NULL);
        if (s == DIFFCL_OK) s = accumulate(&v.total, v.ds_sup, 1.0);
        prof_mark(tr, PROF_DS_SUP);
        if (s == DIFFCL_OK && mu > 0) {
            s = unlabeled_terms(tr, &v, it, &st.agreement, &st.cs_fg_fraction);
            if (s == DIFFCL_OK) s = accumulate(&v.total, v.ds_pseudo, o->mu1 * mu);
            if (s == DIFFCL_OK) s = accumulate(&v.total, v.cs_pseudo, o->mu2 * mu);
            if (s == DIFFCL_OK && v.contrast)
                s = accumulate(&v.total, v.contrast, o->mu2 * mu * o->eta);
            prof_mark(tr, PROF_UNLABELED);
        }
    }
    st.loss = item(v.total);
    st.cs_sup = item(v.cs_sup);
    st.ds_sup = v.ds_sup ? item(v.ds_sup) : NAN;
    st.cs_pseudo = v.cs_pseudo ? item(v.cs_pseudo) : NAN;
    st.ds_pseudo = v.ds_pseudo ? item(v.ds_pseudo) : NAN;
    st.contrast = v.contrast ? item(v.contrast) : NAN;
    if (s == DIFFCL_OK && !isfinite(st.loss))
        s = dc_error(DIFFCL_ERR_NUMERIC,
                     "iteration %lld: the loss is %g (CS supervised %g, DS supervised %g, "
                     "pseudo %g/%g, contrastive %g); stopping before the update",
                     (long long)tr->it, st.loss, st.cs_sup, st.ds_sup, st.cs_pseudo, st.ds_pseudo,
                     st.contrast);
    if (tr->dist) { /* MPI: every rank must pass before the update; logged losses are means over ranks */
        double vals[6] = {st.loss, st.cs_sup, st.ds_sup, st.cs_pseudo, st.ds_pseudo, st.contrast};
        s = dc_dist_agree(tr->dist, s, tr->it, vals, 6);
        st.loss = vals[0], st.cs_sup = vals[1], st.ds_sup = vals[2];
        st.cs_pseudo = vals[3], st.ds_pseudo = vals[4], st.contrast = vals[5];
    }
    if (s == DIFFCL_OK) {
        diffcl_optimizer_zero_grad(tr->opt);
        dc_dist_begin_backward(
            tr->dist); /* MPI: hooks all-reduce gradient buckets as they complete */
        s = diffcl_backward(v.total, NULL);
        diffcl_status ds = dc_dist_finish_backward(tr->dist);
        if (s == DIFFCL_OK) s = ds;
        prof_mark(tr, PROF_BACKWARD);
    }
    if (s == DIFFCL_OK) {
        st.lr = diffcl_lr_poly(o->lr, tr->it, o->iters, 0.9);
        for (int g = 0; g < diffcl_optimizer_num_groups(tr->opt); g++)
            diffcl_optimizer_set_lr(tr->opt, g, st.lr);
        s = diffcl_optimizer_step(tr->opt);
    }
    diffcl_optimizer_zero_grad(tr->opt);
    step_vars_free(&v);
    dc_module_set_samples(tr->cs, NULL,
                          0); /* the networks may be run on other batches between steps */
    dc_module_set_samples(tr->ds, NULL, 0);
    prof_mark(tr, PROF_STEP);
    if (s != DIFFCL_OK) return s;
    tr->prof_steps += tr->profile;
    tr->it++;
    st.iteration = tr->it;
    st.seconds = now_seconds() - t0;
    dc_trainer_push_loss(tr, st.loss);
    if (stats) return dc_options_write(stats, &st, sizeof st, 0, 1, "diffcl_trainer_step");
    return DIFFCL_OK;
}
