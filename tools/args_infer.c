/* diffcl infer's arguments (args.h). */
#include <stdio.h>
#include <string.h>

#include <diffcl/diffcl.h>

#include "args.h"
#include "options.h"

static void infer_usage(FILE *f)
{
    fprintf(
        f,
        "usage: diffcl infer --model CKPT [--model CKPT2 ...] --input FILE|DIR --output FILE|DIR\n"
        "                    [--patch D,H,W] [--stride D,H,W] [--preset la|pancreas|brats]\n"
        "                    [--gaussian] [--tta] [--lcc] [--normalize none|zscore|zscore-nonzero|minmax]\n"
        "                    [--overlay DIR] [--batch N] [--threads N] [--quiet] [--no-plan]\n"
        "                    [--net cs|ds|ensemble] [--ddim-steps N] [--save-probs DIR]\n\n"
        "Segments each input with the model saved in CKPT (diffcl_model_save or a training\n"
        "checkpoint: the file carries the model configuration) by sliding window, averaged\n"
        "softmax and argmax, and writes the label map in the input's format:\n"
        "  <case>.nii.gz / .nii  NIfTI with the input's header (spacing, affine); a 4-D input\n"
        "                        (x,y,z,c) or nnU-Net channel files <case>_0000, _0001... are\n"
        "                        the channels\n"
        "  <case>.png            8-bit PNG of class indices (any image size); the image is read\n"
        "                        as the model was trained: R, G, B for a 3-channel model (RGB\n"
        "                        training images), else one channel (colour as luminance)\n"
        "  <case>.h5             dataset 'image' in, dataset 'label' out\n"
        "With a folder, every such file (and each LA-layout <case>/mri_norm2.h5, written as\n"
        "<case>.h5) is segmented into the output folder, which is created if missing.\n\n"
        "  --patch, --stride     window and step (default: the training patch from a training\n"
        "                        checkpoint, else 112,112,80 in 3-D; stride 18,18,4 for the\n"
        "                        LA patch, else half the patch; 2-D: the patch is the image\n"
        "                        rounded up to a multiple of 16)\n"
        "  --preset              la: 112,112,80 / 18,18,4; pancreas: 96^3 / 16^3; brats: 96^3 / 64^3\n"
        "  --gaussian            Gaussian window weighting; --tta: average over all flips\n"
        "  --lcc                 keep the largest connected component of each class\n"
        "  --normalize           intensity normalisation before inference (default none: the\n"
        "                        model sees the data as the training loader gave it); refused\n"
        "                        when the model has a preprocessing plan\n"
        "  --no-plan             ignore the model's preprocessing plan (by default a model\n"
        "                        trained with one gets each input cropped, normalised and\n"
        "                        resampled as in training, the prediction put back on the\n"
        "                        input's grid)\n"
        "  --overlay DIR         also write a colour overlay PNG of the slice with most foreground\n"
        "  --net N               of a Diff-CL run: cs (default), ds (a seeded DDIM sample from noise,\n"
        "                        conditioned on the image) or ensemble (the mean of both softmaxes)\n"
        "  --ddim-steps N        DS sampling steps (default: the run's, 10)\n"
        "  --model CKPT          given several times (up to 16): an ensemble, the mean of the\n"
        "                        models' softmaxes with the same windows, flips and --net\n"
        "  --reorient-ras        3-D images: segment them turned to RAS+ (the axes permuted and\n"
        "                        flipped as their affine says), and put the result back on the\n"
        "                        input's grid: for a model trained on RAS+ data (train --reorient-ras)\n"
        "  --list FILE           with a folder: only the case ids listed (one per line), e.g. a\n"
        "                        fold's validation cases\n"
        "  --save-probs DIR      also write the probabilities: DIR/<case>.nii.gz, float32 with\n"
        "                        the classes on the last axis (x, y, z, K; a 2-D image has z = 1)\n"
        "                        and the input's NIfTI header; 'diffcl ensemble' averages them\n");
}

static int parse3(const char *s, int64_t v[3])
{
    long long a, b, c;
    char tail;
    int n = sscanf(s, "%lld,%lld,%lld%c", &a, &b, &c, &tail);
    if (n == 3 && a > 0 && b > 0 && c > 0) {
        v[0] = a;
        v[1] = b;
        v[2] = c;
        return 1;
    }
    n = sscanf(s, "%lld,%lld%c", &b, &c, &tail);
    if (n == 2 && b > 0 && c > 0) {
        v[0] = 1;
        v[1] = b;
        v[2] = c;
        return 1;
    }
    return 0;
}

int infer_args_parse(int argc, char **argv, infer_args *args)
{
    memset(args, 0, sizeof *args);
    args->normalize = "none";
    args->batch = 1;
    {
        diffcl_net_options net = DIFFCL_NET_OPTIONS_INIT;
        args->net = net;
    }
    const char *preset = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            infer_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--gaussian")) {
            args->gaussian = 1;
            continue;
        }
        if (!strcmp(a, "--tta")) {
            args->tta = 1;
            continue;
        }
        if (!strcmp(a, "--no-plan")) {
            args->no_plan = 1;
            continue;
        }
        if (!strcmp(a, "--lcc")) {
            args->lcc = 1;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            args->quiet = 1;
            continue;
        }
        if (!strcmp(a, "--reorient-ras")) {
            args->reorient = 1;
            continue;
        }
        if (i + 1 >= argc) return opt_fail("infer", "option %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) {
            if (args->n_models == INFER_MAX_MODELS)
                return opt_fail("infer", "at most %d --model", INFER_MAX_MODELS);
            args->model_paths[args->n_models++] = v;
        } else if (!strcmp(a, "--save-probs"))
            args->save_probs = v;
        else if (!strcmp(a, "--list"))
            args->list = v;
        else if (!strcmp(a, "--input"))
            args->input = v;
        else if (!strcmp(a, "--output"))
            args->output = v;
        else if (!strcmp(a, "--overlay"))
            args->overlay_dir = v;
        else if (!strcmp(a, "--preset"))
            preset = v;
        else if (!strcmp(a, "--normalize")) {
            if (strcmp(v, "none") && strcmp(v, "zscore") && strcmp(v, "zscore-nonzero") &&
                strcmp(v, "minmax"))
                return opt_fail("infer",
                                "--normalize must be none, zscore, zscore-nonzero or minmax");
            args->normalize = v;
        } else if (!strcmp(a, "--patch")) {
            if (!parse3(v, args->patch))
                return opt_fail("infer", "--patch must be D,H,W (or H,W), not '%s'", v);
            args->patch_given = 1;
        } else if (!strcmp(a, "--stride")) {
            if (!parse3(v, args->stride))
                return opt_fail("infer", "--stride must be D,H,W (or H,W), not '%s'", v);
            args->stride_given = 1;
        } else if (!strcmp(a, "--threads")) {
            if (!opt_int(v, 0, 1024, &args->threads))
                return opt_fail("infer", "bad --threads %s", v);
        } else if (!strcmp(a, "--net")) {
            if (!strcmp(v, "cs"))
                args->net.net = DIFFCL_NET_CS;
            else if (!strcmp(v, "ds"))
                args->net.net = DIFFCL_NET_DS;
            else if (!strcmp(v, "ensemble"))
                args->net.net = DIFFCL_NET_ENSEMBLE;
            else
                return opt_fail("infer", "--net %s is not cs|ds|ensemble", v);
        } else if (!strcmp(a, "--ddim-steps")) {
            if (!opt_int(v, 1, 1000, &args->net.ddim_steps))
                return opt_fail("infer", "bad --ddim-steps %s (1..1000)", v);
        } else if (!strcmp(a, "--batch")) {
            if (!opt_int(v, 1, 256, &args->batch)) return opt_fail("infer", "bad --batch %s", v);
        } else
            return opt_fail("infer", "unknown option %s (see 'diffcl infer --help')", a);
    }
    if (!args->n_models || !args->input || !args->output)
        return opt_fail("infer", "--model, --input and --output are required");
    if (preset) {
        static const struct {
            const char *n;
            int64_t p[3], s[3];
        } presets[] = {{"la", {112, 112, 80}, {18, 18, 4}},
                       {"pancreas", {96, 96, 96}, {16, 16, 16}},
                       {"brats", {96, 96, 96}, {64, 64, 64}}};
        int k = -1;
        for (int j = 0; j < 3; j++)
            if (!strcmp(preset, presets[j].n)) k = j;
        if (k < 0) return opt_fail("infer", "--preset must be la, pancreas or brats");
        if (!args->patch_given) memcpy(args->patch, presets[k].p, sizeof args->patch);
        if (!args->stride_given) memcpy(args->stride, presets[k].s, sizeof args->stride);
        args->patch_given = args->stride_given = 1;
    }
    return TOOL_ARGS_RUN;
}
