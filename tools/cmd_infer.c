/* diffcl infer: segment images (NIfTI, PNG, h5) with a saved model by sliding window.
 * Public API only. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <diffcl/diffcl.h>
#include <diffcl/model.h>

#include "commands.h"
#include "args.h"
#include "options.h"
#include "paths.h"

static const char *ext_of(const char *p)
{
    if (ends_with(p, ".nii.gz")) return ".nii.gz";
    if (ends_with(p, ".nii")) return ".nii";
    if (ends_with(p, ".png")) return ".png";
    if (ends_with(p, ".h5")) return ".h5";
    return NULL;
}

/* The training patch from a training checkpoint's "diffcl.train_options" (0 if absent). */
static void checkpoint_patch(diffcl_context *ctx, const char *path, int64_t patch[3], int *reorient)
{
    diffcl_tensor_dict *d = NULL;
    patch[0] = patch[1] = patch[2] = 0;
    if (diffcl_safetensors_load(ctx, path, &d) != DIFFCL_OK) return;
    const char *j = diffcl_tensor_dict_get_meta(d, "diffcl.train_options");
    for (int a = 0; j && a < 3; a++) {
        char key[32];
        snprintf(key, sizeof key, "\"patch[%d]\":", a);
        const char *p = strstr(j, key);
        if (p) patch[a] = (int64_t)strtod(p + strlen(key), NULL);
    }
    if (j && strstr(j, "\"reorient_ras\":1")) *reorient = 1; /* trained on RAS+ cases */
    diffcl_tensor_dict_free(d);
}

typedef struct job {
    const char *model_path; /* the first --model: its training patch sets the window */
    diffcl_module *model;   /* one network, or the ensemble of every --model */
    diffcl_vnet_options vo;
    diffcl_sliding_window_options so;
    int patch_given, stride_given;
    int64_t train_patch[3];
    const char *normalize;
    diffcl_plan *plan; /* the first --model's preprocessing plan, or NULL */
    const char *overlay_dir;
    const char *save_probs;
    int reorient; /* --reorient-ras */
    int quiet;
    int tty;         /* stdout is a terminal: a progress line with an ETA */
    int64_t n_cases; /* inputs to segment, and done so far */
    int64_t n_done;
    double t_start; /* wall clock at the first case */
} job;

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* On a terminal: "[3/10] case  ETA 1m20s", replaced by the next line. */
static void show_progress(const job *jb, const char *id)
{
    if (!jb->tty || jb->quiet || jb->n_cases < 2) return;
    printf("\r\033[K[%lld/%lld] %s", (long long)jb->n_done + 1, (long long)jb->n_cases, id);
    if (jb->n_done > 0) {
        double per = (wall_seconds() - jb->t_start) / (double)jb->n_done;
        double eta = per * (double)(jb->n_cases - jb->n_done);
        printf("  ETA %dm%02ds", (int)(eta / 60), (int)eta % 60);
    }
    fflush(stdout);
}

/* The probabilities F32 [K, spatial...] as NIfTI (x, y, z, K), with the input's header. */
static diffcl_status write_probs(const diffcl_tensor *probs, const char *path,
                                 const diffcl_image_meta *meta)
{
    diffcl_tensor *t = NULL, *u = NULL, *c = NULL;
    diffcl_status s = DIFFCL_OK;
    if (diffcl_tensor_ndim(probs) == 3) /* 2-D [K, H, W]: z = 1 */
        s = diffcl_tensor_unsqueeze(probs, 3, &t);
    else
        t = diffcl_tensor_retain((diffcl_tensor *)probs);
    int perm[4] = {1, 2, 3, 0};
    if (s == DIFFCL_OK) s = diffcl_tensor_permute(t, perm, &u);
    if (s == DIFFCL_OK) s = diffcl_tensor_contiguous(u, &c);
    if (s == DIFFCL_OK)
        s = diffcl_nifti_write(c, path,
                               meta->has_nifti_header || meta->has_nifti2_header ? meta : NULL);
    diffcl_tensor_free(t);
    diffcl_tensor_free(u);
    diffcl_tensor_free(c);
    return s;
}

/* Read an input as F32 [C, ...] with its meta (NIfTI). A PNG is read as the model was
 * trained (train --rgb): R, G, B for a 3-channel model, else one luminance channel. */
static diffcl_status read_input(diffcl_context *ctx, const char *path, int in_channels,
                                diffcl_tensor **image, diffcl_image_meta *meta)
{
    diffcl_image_meta_init(meta);
    *image = NULL;
    diffcl_tensor *t = NULL, *u = NULL;
    diffcl_status s;
    if (ends_with(path, ".png")) {
        diffcl_read_options ro = DIFFCL_READ_OPTIONS_INIT;
        ro.png_color = in_channels == 3 ? DIFFCL_PNG_COLOR_RGB : DIFFCL_PNG_COLOR_L;
        meta->ndim = 2;
        return diffcl_png_read_image_ex(ctx, path, &ro, image, NULL); /* [C, H, W] */
    } else if (ends_with(path, ".h5")) {
        s = diffcl_h5_read(ctx, path, "image", &u);
        if (s == DIFFCL_OK) s = diffcl_tensor_to_dtype(u, DIFFCL_F32, &t);
        diffcl_tensor_free(u);
        u = NULL;
        if (s == DIFFCL_OK && diffcl_tensor_ndim(t) == 4) {
            *image = t; /* [C, D, H, W] */
            meta->ndim = 3;
            return DIFFCL_OK;
        }
        if (s == DIFFCL_OK) meta->ndim = diffcl_tensor_ndim(t);
    } else {
        s = diffcl_nifti_read(ctx, path, DIFFCL_NIFTI_IMAGE, &t, meta);
        if (s == DIFFCL_OK && diffcl_tensor_ndim(t) == 4) { /* (x, y, z, c) */
            int perm[4] = {3, 0, 1, 2};
            s = diffcl_tensor_permute(t, perm, &u);
            diffcl_tensor_free(t);
            t = NULL;
            if (s == DIFFCL_OK) s = diffcl_tensor_contiguous(u, image);
            diffcl_tensor_free(u);
            return s;
        }
        /* nnU-Net: <case>_0000.nii.gz with sibling channel files */
        size_t L = strlen(path);
        const char *ext = ext_of(path);
        size_t base = L - strlen(ext);
        if (s == DIFFCL_OK && base > 5 && !strncmp(path + base - 5, "_0000", 5)) {
            diffcl_tensor *chs[64];
            int n = 0;
            s = diffcl_tensor_unsqueeze(t, 0, &chs[n++]);
            for (int c = 1; s == DIFFCL_OK && c < 64; c++) {
                char p[4096];
                snprintf(p, sizeof p, "%.*s_%04d%s", (int)(base - 5), path, c, ext);
                if (!is_file(p)) break;
                diffcl_tensor *x = NULL;
                s = diffcl_nifti_read(ctx, p, DIFFCL_NIFTI_IMAGE, &x, NULL);
                if (s == DIFFCL_OK) s = diffcl_tensor_unsqueeze(x, 0, &chs[n++]);
                diffcl_tensor_free(x);
            }
            if (s == DIFFCL_OK) s = diffcl_tensor_concat(chs, n, 0, image);
            for (int c = 0; c < n; c++) diffcl_tensor_free(chs[c]);
            diffcl_tensor_free(t);
            return s;
        }
    }
    if (s != DIFFCL_OK) return s;
    s = diffcl_tensor_unsqueeze(t, 0, &u);
    diffcl_tensor_free(t);
    if (s == DIFFCL_OK) s = diffcl_tensor_contiguous(u, image);
    diffcl_tensor_free(u);
    return s;
}

static diffcl_status write_output(const diffcl_tensor *label, const char *path,
                                  const diffcl_image_meta *meta)
{
    if (ends_with(path, ".png")) return diffcl_png_write(label, path, 8);
    if (ends_with(path, ".h5")) {
        const char *names[1] = {"label"};
        const diffcl_tensor *ts[1] = {label};
        return diffcl_h5_write(path, names, ts, 1, 4);
    }
    return diffcl_nifti_write(label, path, meta);
}

/* Segment @p x with the model (and its plan); with --reorient-ras a 3-D image is brought to
 * RAS+ first and the result put back on the input's grid, where the input's header applies. */
static diffcl_status segment_case(const job *jb, const diffcl_tensor *x,
                                  const diffcl_image_meta *meta,
                                  const diffcl_sliding_window_options *so, diffcl_tensor **label,
                                  diffcl_tensor **probs)
{
    if (!jb->reorient || meta->ndim != 3)
        return diffcl_segment_planned(jb->model, jb->plan, x, meta, so, label, probs);
    diffcl_orientation o;
    diffcl_image_meta m;
    diffcl_tensor *xr = NULL, *lr = NULL, *pr = NULL;
    int64_t shape[3] = {diffcl_tensor_dim(x, 1), diffcl_tensor_dim(x, 2), diffcl_tensor_dim(x, 3)};
    diffcl_status s = diffcl_orientation_to_ras(meta, &o);
    if (s == DIFFCL_OK) s = diffcl_reorient(x, &o, 0, &xr);
    if (s == DIFFCL_OK) {
        diffcl_reorient_meta(meta, shape, &o, &m);
        s = diffcl_segment_planned(jb->model, jb->plan, xr, &m, so, &lr, probs ? &pr : NULL);
    }
    if (s == DIFFCL_OK) s = diffcl_reorient(lr, &o, 1, label);
    if (s == DIFFCL_OK && probs) s = diffcl_reorient(pr, &o, 1, probs);
    diffcl_tensor_free(xr);
    diffcl_tensor_free(lr);
    diffcl_tensor_free(pr);
    return s;
}

static int run_case(diffcl_context *ctx, job *jb, const char *in, const char *out, const char *id)
{
    clock_t t0 = clock();
    double w0 = wall_seconds();
    if (jb->n_done == 0) jb->t_start = w0;
    show_progress(jb, id);
    diffcl_tensor *img = NULL, *x = NULL, *label = NULL, *probs = NULL;
    diffcl_image_meta meta;
    diffcl_status s = read_input(ctx, in, jb->vo.in_channels, &img, &meta);
    int rc = 0;
    if (s == DIFFCL_OK) {
        int nd = diffcl_tensor_ndim(img) - 1;
        if (nd != jb->vo.dims) {
            fprintf(stderr, "diffcl infer: '%s' is a %d-D image but the model is %d-D\n", in, nd,
                    jb->vo.dims);
            rc = 1;
        } else if (diffcl_tensor_dim(img, 0) != jb->vo.in_channels) {
            fprintf(stderr, "diffcl infer: '%s' has %lld channel(s) but the model takes %d\n", in,
                    (long long)diffcl_tensor_dim(img, 0), jb->vo.in_channels);
            rc = 1;
        }
    }
    if (s == DIFFCL_OK && !rc) {
        if (!strcmp(jb->normalize, "zscore"))
            s = diffcl_normalize_zscore(img, 0, &x);
        else if (!strcmp(jb->normalize, "zscore-nonzero"))
            s = diffcl_normalize_zscore(img, 1, &x);
        else if (!strcmp(jb->normalize, "minmax"))
            s = diffcl_normalize_minmax(img, &x);
        else
            x = diffcl_tensor_retain(img);
    }
    if (s == DIFFCL_OK && !rc) {
        diffcl_sliding_window_options so = jb->so;
        if (jb->vo.dims == 2 && !jb->patch_given && !jb->train_patch[1]) {
            for (int a = 1; a < 3; a++) {
                int64_t n = diffcl_tensor_dim(x, a);
                so.patch[a] = (n + 15) / 16 * 16;
            }
        }
        if (!jb->stride_given) diffcl_sliding_window_default_stride(&so);
        s = segment_case(jb, x, &meta, &so, &label, jb->save_probs ? &probs : NULL);
    }
    if (s == DIFFCL_OK && !rc) s = write_output(label, out, &meta);
    if (s == DIFFCL_OK && !rc && jb->save_probs) {
        char p[4096], name[1100];
        snprintf(name, sizeof name, "%s.nii.gz", id);
        join_path(p, sizeof p, jb->save_probs, name);
        s = write_probs(probs, p, &meta);
    }
    if (s == DIFFCL_OK && !rc && jb->overlay_dir) {
        char p[4096], name[1100];
        snprintf(name, sizeof name, "%s.png", id);
        join_path(p, sizeof p, jb->overlay_dir, name);
        s = diffcl_overlay_png(img, label, NULL, 0, -1, p);
    }
    if (jb->tty && !jb->quiet && jb->n_cases > 1) printf("\r\033[K");
    if (s != DIFFCL_OK) {
        fflush(stdout);
        fprintf(stderr, "diffcl infer: %s: %s\n", in, diffcl_last_error());
        rc = 1;
    } else if (!rc && !jb->quiet) {
        char count[48] = "";
        if (jb->n_cases > 1)
            snprintf(count, sizeof count, "[%lld/%lld] ", (long long)jb->n_done + 1,
                     (long long)jb->n_cases);
        printf("%s%s -> %s (%.1f s, %.1f s CPU)\n", count, in, out, wall_seconds() - w0,
               (double)(clock() - t0) / CLOCKS_PER_SEC);
    }
    fflush(stdout);
    jb->n_done++;
    diffcl_tensor_free(probs);
    diffcl_tensor_free(img);
    diffcl_tensor_free(x);
    diffcl_tensor_free(label);
    return rc;
}

/* Checks of --input, --output and --overlay before anything loads. 0 or the exit code. */
static int check_paths(const infer_args *a, int in_dir)
{
    if (!in_dir && !is_file(a->input)) return opt_fail("infer", "no such input '%s'", a->input);
    if (!in_dir && !ext_of(a->input))
        return opt_fail("infer", "'%s': expected .nii.gz, .nii, .png or .h5", a->input);
    struct stat st;
    if (in_dir && stat(a->output, &st) == 0 && !S_ISDIR(st.st_mode))
        return opt_fail("infer", "--output '%s' must be a folder when --input is one", a->output);
    if (!in_dir && (!ext_of(a->output) || strcmp(ext_of(a->output), ext_of(a->input))))
        return opt_fail("infer", "--output '%s' must have the input's extension (%s)", a->output,
                        ext_of(a->input));
    if (a->overlay_dir && stat(a->overlay_dir, &st) == 0 && !S_ISDIR(st.st_mode))
        return opt_fail("infer", "--overlay '%s' is not a folder", a->overlay_dir);
    if (a->save_probs && stat(a->save_probs, &st) == 0 && !S_ISDIR(st.st_mode))
        return opt_fail("infer", "--save-probs '%s' is not a folder", a->save_probs);
    return 0;
}

/* The network (--net) and the CS's options, which describe the input. 0 or 1 (printed). */
/* One network of --model @p path (--net) and its CS's options, which describe the input. */
static diffcl_status load_one(diffcl_context *ctx, const infer_args *a, const char *path,
                              diffcl_module **m, diffcl_vnet_options *vo)
{
    diffcl_status s = diffcl_trainer_load_net(ctx, path, &a->net, m);
    vo->struct_size = sizeof *vo;
    /* the DS and the pair's ensemble come wrapped; the CS's options describe the input */
    if (s == DIFFCL_OK)
        s = diffcl_vnet_get_options(
            a->net.net == DIFFCL_NET_CS ? *m : diffcl_module_child(*m, "cs"), vo);
    return s;
}

/* The network (--net) of every --model, as one ensemble when there are several. 0 or 1
 * (printed). */
static int load_model(diffcl_context *ctx, const infer_args *a, job *jb)
{
    diffcl_module *members[INFER_MAX_MODELS] = {0};
    diffcl_status s = DIFFCL_OK;
    int n = 0;
    for (; s == DIFFCL_OK && n < a->n_models; n++) {
        diffcl_vnet_options vo;
        s = load_one(ctx, a, a->model_paths[n], &members[n], &vo);
        if (s == DIFFCL_OK && n == 0) jb->vo = vo;
        if (s == DIFFCL_OK && n > 0 &&
            (vo.dims != jb->vo.dims || vo.in_channels != jb->vo.in_channels ||
             vo.n_classes != jb->vo.n_classes)) {
            fprintf(stderr,
                    "diffcl infer: %s is a %d-D model with %d channel(s) and %d classes; %s is "
                    "%d-D with %d and %d: an ensemble needs the same\n",
                    a->model_paths[n], vo.dims, vo.in_channels, vo.n_classes, a->model_paths[0],
                    jb->vo.dims, jb->vo.in_channels, jb->vo.n_classes);
            n++;
            for (int i = 0; i < n; i++) diffcl_module_free(members[i]);
            return 1;
        }
    }
    if (s == DIFFCL_OK && n == 1) jb->model = members[0];
    if (s == DIFFCL_OK && n > 1) s = diffcl_ensemble_create(ctx, members, n, &jb->model);
    if (s != DIFFCL_OK) {
        fprintf(stderr, "diffcl infer: %s\n", diffcl_last_error());
        for (int i = 0; i < n; i++) diffcl_module_free(members[i]);
        return 1;
    }
    diffcl_module_train(jb->model, 0);
    return 0;
}

/* The preprocessing plan of the models (plan.h): that of the first; every other --model must
 * have the same. --no-plan leaves it out. 0 or 1 (printed). */
static int load_plan(const infer_args *a, job *jb)
{
    if (a->no_plan) return 0;
    char *first = NULL;
    for (int n = 0; n < a->n_models; n++) {
        diffcl_plan *p = NULL;
        char *json = NULL;
        diffcl_status s = diffcl_plan_load(a->model_paths[n], &p);
        if (s == DIFFCL_ERR_NOT_FOUND) s = DIFFCL_OK; /* 0.1.0 files, runs without a plan */
        if (s == DIFFCL_OK && p) s = diffcl_plan_to_json(p, &json);
        int differs = s == DIFFCL_OK && n > 0 && (!json != !first || (json && strcmp(json, first)));
        if (s == DIFFCL_OK && n == 0) {
            jb->plan = p, first = json;
            p = NULL, json = NULL;
        }
        diffcl_plan_free(p);
        diffcl_plan_string_free(json);
        if (s != DIFFCL_OK || differs) {
            if (s != DIFFCL_OK)
                fprintf(stderr, "diffcl infer: %s\n", diffcl_last_error());
            else
                fprintf(stderr,
                        "diffcl infer: %s and %s have different preprocessing plans: an ensemble "
                        "needs the same (or --no-plan)\n",
                        a->model_paths[0], a->model_paths[n]);
            diffcl_plan_string_free(first);
            return 1;
        }
    }
    diffcl_plan_string_free(first);
    if (jb->plan && strcmp(jb->normalize, "none")) {
        fprintf(stderr,
                "diffcl infer: %s has a preprocessing plan, which normalises the input; "
                "--normalize %s would normalise it twice (give --no-plan to use "
                "--normalize instead)\n",
                a->model_paths[0], jb->normalize);
        return 1;
    }
    return 0;
}

/* Output folders are made like mkdir -p, once the model has loaded. 0 or 1 (printed). */
static int make_output_dirs(const infer_args *a, int in_dir)
{
    const char *dirs[3] = {in_dir ? a->output : NULL, a->overlay_dir, a->save_probs};
    for (int k = 0; k < 3; k++)
        if (dirs[k] && make_dirs(dirs[k])) {
            fprintf(stderr, "diffcl infer: cannot create the folder '%s': %s\n", dirs[k],
                    strerror(errno));
            return 1;
        }
    return 0;
}

/* Window, stride and options: given, else the training patch of a checkpoint, else the
 * library's defaults. */
static void window_options(diffcl_context *ctx, const infer_args *a, job *jb)
{
    checkpoint_patch(ctx, jb->model_path, jb->train_patch, &jb->reorient);
    if (jb->patch_given)
        memcpy(jb->so.patch, a->patch, sizeof a->patch);
    else if (jb->train_patch[1] > 0)
        memcpy(jb->so.patch, jb->train_patch, sizeof jb->train_patch);
    if (jb->stride_given) memcpy(jb->so.stride, a->stride, sizeof a->stride);
    jb->so.gaussian = a->gaussian;
    jb->so.tta_flips = a->tta;
    jb->so.largest_cc = a->lcc;
    jb->so.batch = a->batch;
}

/* The inputs of folder @p input, sorted: image files (nnU-Net channel files after _0000
 * left out) and LA-layout <case>/mri_norm2.h5. 0, or 1 on running out of memory. */
static int list_inputs(const char *input, char ***names_out, int64_t *n_out)
{
    DIR *d = opendir(input);
    char **names = NULL;
    int64_t n = 0, cap = 0;
    int oom = 0;
    struct dirent *e;
    while (d && !oom && (e = readdir(d))) {
        const char *ext = ext_of(e->d_name);
        char la[4096], sub[1100];
        if (e->d_name[0] == '.' || strlen(e->d_name) > 1000) continue;
        if (!ext) {
            /* the LA layout: <case>/mri_norm2.h5, predicted as <output>/<case>.h5 */
            snprintf(sub, sizeof sub, "%s/mri_norm2.h5", e->d_name);
            join_path(la, sizeof la, input, sub);
            if (!is_file(la)) continue;
        } else {
            size_t base = strlen(e->d_name) - strlen(ext);
            /* nnU-Net channel files after the first are read with _0000 */
            if (base > 5 && e->d_name[base - 5] == '_' &&
                strncmp(e->d_name + base - 5, "_0000", 5) &&
                strspn(e->d_name + base - 4, "0123456789") == 4)
                continue;
            snprintf(sub, sizeof sub, "%s", e->d_name);
        }
        if (n == cap) {
            char **grown = realloc(names, sizeof(char *) * (size_t)(cap ? 2 * cap : 64));
            if (!grown) {
                oom = 1;
                break;
            }
            names = grown;
            cap = cap ? 2 * cap : 64;
        }
        if (!(names[n] = strdup(sub)))
            oom = 1;
        else
            n++;
    }
    if (d) closedir(d);
    if (n > 1) qsort(names, (size_t)n, sizeof(char *), cmp_str);
    *names_out = names;
    *n_out = n;
    if (oom) fprintf(stderr, "diffcl infer: out of memory listing '%s'\n", input);
    return oom;
}

/* Every input of folder @p input into folder @p output. The exit code. */
/* The case id of a folder entry: the name less its extension and nnU-Net's _0000, or the
 * LA layout's <case> of <case>/mri_norm2.h5. */
static void case_id(const char *name, char *id, size_t n)
{
    const char *slash = strchr(name, '/');
    size_t base = slash ? (size_t)(slash - name) : strlen(name) - strlen(ext_of(name));
    if (!slash && base > 5 && !strncmp(name + base - 5, "_0000", 5)) base -= 5;
    snprintf(id, n, "%.*s", (int)base, name);
}

/* --list: keep the entries whose case id is listed; every listed id must be there. 0 or 1. */
static int keep_listed(const char *list, const char *input, char **names, int64_t *n)
{
    char **ids = NULL;
    int64_t n_ids = 0, kept = 0;
    if (diffcl_list_read(list, &ids, &n_ids) != DIFFCL_OK) {
        fprintf(stderr, "diffcl infer: %s\n", diffcl_last_error());
        return 1;
    }
    int rc = 0;
    for (int64_t k = 0; k < n_ids && !rc; k++) {
        int found = 0;
        for (int64_t i = 0; i < *n && !found; i++) {
            char id[1024];
            case_id(names[i], id, sizeof id);
            found = !strcmp(id, ids[k]);
        }
        if (!found) {
            fprintf(stderr, "diffcl infer: case '%s' of %s is not in '%s'\n", ids[k], list, input);
            rc = 1;
        }
    }
    for (int64_t i = 0; i < *n; i++) {
        char id[1024];
        case_id(names[i], id, sizeof id);
        int listed = 0;
        for (int64_t k = 0; k < n_ids && !listed; k++) listed = !strcmp(id, ids[k]);
        if (listed)
            names[kept++] = names[i];
        else
            free(names[i]);
    }
    *n = kept;
    diffcl_list_free(ids, n_ids);
    return rc;
}

static int run_folder(diffcl_context *ctx, job *jb, const char *input, const char *output,
                      const char *list)
{
    char **names = NULL;
    int64_t n = 0;
    const int oom = list_inputs(input, &names, &n);
    int rc = oom;
    if (!oom && list) rc = keep_listed(list, input, names, &n);
    const int stop = rc; /* nothing runs after a bad folder or list; a failed case stops none */
    jb->n_cases = n;
    if (!rc && n == 0) {
        fprintf(
            stderr,
            "diffcl infer: no .nii.gz, .nii, .png or .h5 file (or <case>/mri_norm2.h5) in '%s'\n",
            input);
        rc = 1;
    }
    for (int64_t i = 0; i < n; i++) {
        const char *ext = ext_of(names[i]);
        char id[1024], in[4096], out[4096], name[1100];
        case_id(names[i], id, sizeof id);
        join_path(in, sizeof in, input, names[i]);
        snprintf(name, sizeof name, "%s%s", id, ext ? ext : ".h5");
        join_path(out, sizeof out, output, name);
        if (!stop) rc |= run_case(ctx, jb, in, out, id);
        free(names[i]);
    }
    free(names);
    return rc;
}

int cmd_infer(int argc, char **argv)
{
    infer_args args;
    int rc = infer_args_parse(argc, argv, &args);
    if (rc != TOOL_ARGS_RUN) return rc;
    job jb;
    memset(&jb, 0, sizeof jb);
    diffcl_sliding_window_options_init(&jb.so);
    jb.model_path = args.model_paths[0];
    jb.save_probs = args.save_probs;
    jb.reorient = args.reorient;
    jb.tty = isatty(STDOUT_FILENO);
    jb.normalize = args.normalize;
    jb.overlay_dir = args.overlay_dir;
    jb.quiet = args.quiet;
    jb.patch_given = args.patch_given;
    jb.stride_given = args.stride_given;
    int in_dir = is_dir(args.input);
    rc = check_paths(&args, in_dir);
    if (rc) return rc;
    diffcl_context_options co = DIFFCL_CONTEXT_OPTIONS_INIT;
    co.n_threads = args.threads;
    diffcl_context *ctx = NULL;
    if (tool_context_create(&co, &ctx) != DIFFCL_OK) {
        fprintf(stderr, "diffcl infer: %s\n", diffcl_last_error());
        return 1;
    }
    rc = load_model(ctx, &args, &jb);
    if (!rc) rc = load_plan(&args, &jb);
    if (!rc) rc = make_output_dirs(&args, in_dir);
    if (!rc) {
        window_options(ctx, &args, &jb);
        if (in_dir) {
            rc = run_folder(ctx, &jb, args.input, args.output, args.list);
        } else {
            const char *slash = strrchr(args.input, '/');
            char id[1024];
            snprintf(id, sizeof id, "%s", slash ? slash + 1 : args.input);
            id[strlen(id) - strlen(ext_of(args.input))] = 0;
            rc = run_case(ctx, &jb, args.input, args.output, id);
        }
    }
    diffcl_module_free(jb.model);
    diffcl_plan_free(jb.plan);
    diffcl_context_free(ctx);
    return rc;
}
