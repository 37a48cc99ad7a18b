/* The training loop: progress lines, CSV log, validation, checkpoints, curves. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "train/trainer_internal.h"

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void path_in(char *buf, size_t n, const diffcl_trainer *tr, const char *name)
{
    snprintf(buf, n, "%s/%s", tr->o.out_dir, name);
}

static void fmt_eta(char *buf, size_t n, double seconds)
{
    long s = seconds > 0 && seconds < 1e9 ? (long)seconds : 0;
    if (s >= 3600)
        snprintf(buf, n, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else
        snprintf(buf, n, "%ldm%02lds", s / 60, s % 60);
}

static void push_val(diffcl_trainer *tr, double it, double dice)
{
    if (tr->n_val == tr->cap_val) {
        int64_t cap = tr->cap_val ? tr->cap_val * 2 : 32;
        double *a = dc_realloc(tr->val_it, (size_t)cap * sizeof *a);
        if (a) tr->val_it = a;
        double *b = a ? dc_realloc(tr->val_dice, (size_t)cap * sizeof *b) : NULL;
        if (!b) return;
        tr->val_dice = b;
        tr->cap_val = cap;
    }
    tr->val_it[tr->n_val] = it;
    tr->val_dice[tr->n_val++] = dice;
}

#define CSV_HEADER                                                                                 \
    "iteration,loss,cs_sup,ds_sup,cs_pseudo,ds_pseudo,contrast,mu,lr,agreement,cs_fg_fraction,seconds,val_dice\n"

/* A resumed run: log.csv keeps only the rows up to the checkpoint's iteration (an interrupted
 * run logged past its last checkpoint, and those iterations are trained again), rewritten
 * atomically, and the loss and validation curves are read back from it so that curves.png
 * shows the whole run. A missing or unreadable log starts a new one with a warning. */
static diffcl_status resume_log(diffcl_trainer *tr, const char *csv_path, int *have_header)
{
    *have_header = 0;
    FILE *in = fopen(csv_path, "r");
    if (!in) {
        dc_log(tr->ctx, DIFFCL_LOG_WARN, "resuming without %s: a new log starts at iteration %lld",
               csv_path, (long long)tr->it);
        return DIFFCL_OK;
    }
    int64_t n = tr->it;
    char **rows = dc_calloc_raw((size_t)(n > 0 ? n : 1), sizeof *rows);
    char line[1024], header[1024] = "";
    diffcl_status s =
        rows ? DIFFCL_OK : dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "resume: out of memory");
    while (s == DIFFCL_OK && fgets(line, sizeof line, in)) {
        if (!header[0] &&
            (line[0] < '0' || line[0] > '9')) { /* a log without its header starts with a row */
            snprintf(header, sizeof header, "%s", line);
            continue;
        }
        long long k = strtoll(line, NULL, 10);
        if (k < 1 || k > n) continue; /* past the checkpoint: trained again */
        free(rows[k - 1]);            /* a later row of an iteration replaces an earlier one */
        rows[k - 1] = dc_strdup(line);
        if (!rows[k - 1]) s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "resume: out of memory");
    }
    fclose(in);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", csv_path);
    FILE *out = s == DIFFCL_OK ? fopen(tmp, "w") : NULL;
    if (s == DIFFCL_OK && !out) s = dc_error(DIFFCL_ERR_IO, "cannot write %s", tmp);
    if (s == DIFFCL_OK) {
        if (!header[0]) /* restore the header a log written without one lacks */
            snprintf(header, sizeof header, "%s", CSV_HEADER);
        fputs(header, out);
        for (int64_t i = 0; i < n; i++) {
            if (!rows[i]) continue;
            fputs(rows[i], out);
            /* iteration,loss,...,val_dice: the loss is field 2, the validation Dice the last */
            const char *c = strchr(rows[i], ',');
            double loss = c ? strtod(c + 1, NULL) : NAN;
            const char *last = strrchr(rows[i], ',');
            double val = last ? strtod(last + 1, NULL) : NAN;
            dc_trainer_push_loss(tr, loss);
            if (isfinite(val)) push_val(tr, (double)(i + 1), val);
        }
        if (fclose(out) != 0 || rename(tmp, csv_path) != 0)
            s = dc_error(DIFFCL_ERR_IO, "cannot rewrite %s", csv_path);
        else
            *have_header = 1;
    }
    if (s != DIFFCL_OK) remove(tmp);
    for (int64_t i = 0; rows && i < n; i++) free(rows[i]);
    free(rows);
    return s;
}

/* model.safetensors: the CS as diffcl_model_save writes it (what diffcl_model_load reads),
 * the training options (diffcl infer takes its default window, the training patch, from
 * them) and, for Diff-CL, the DS under "ds." with its configuration (diffcl_trainer_load_net). */
static diffcl_status save_model(diffcl_trainer *tr, const char *path)
{
    diffcl_tensor_dict *all = NULL;
    DC_TRY(diffcl_tensor_dict_new(tr->ctx, &all));
    diffcl_status s = dc_trainer_add_networks(tr, all, "");
    if (s == DIFFCL_OK)
        s = diffcl_tensor_dict_set_meta(all, "diffcl.version", DIFFCL_VERSION_STRING);
    if (s == DIFFCL_OK) s = diffcl_safetensors_save(all, path);
    diffcl_tensor_dict_free(all);
    return s;
}

/* Validate at a checkpoint: *val, and whether it improved on the best so far (always without
 * validation), which then becomes the best. */
static diffcl_status validate(diffcl_trainer *tr, double *val, int *improved)
{
    DC_TRY(dc_trainer_validate(tr, val));
    *improved =
        !tr->val_set || (isfinite(*val) && (!isfinite(tr->best_dice) || *val > tr->best_dice));
    if (tr->val_set && isfinite(*val)) push_val(tr, (double)tr->it, *val);
    if (*improved) {
        if (tr->val_set) tr->best_dice = *val;
        tr->best_it = tr->it;
    }
    return DIFFCL_OK;
}

/* Write best and model (when improved), then last. Each file is replaced atomically, and last
 * comes last: a run killed before last.safetensors is renamed resumes from the previous
 * checkpoint, trains the same iterations again and rewrites best and model as they were, so
 * that they never lag behind the best_dice that last.safetensors records. */
static diffcl_status checkpoint(diffcl_trainer *tr, int improved)
{
    char last[4096], best[4096], model[4096];
    path_in(last, sizeof last, tr, "last.safetensors");
    path_in(best, sizeof best, tr, "best.safetensors");
    path_in(model, sizeof model, tr, "model.safetensors");
    if (improved) {
        DC_TRY(diffcl_trainer_save(tr, best));
        DC_TRY(save_model(tr, model));
    }
    return diffcl_trainer_save(tr, last);
}

/* Whether @p name is a temporary file of the run's writers, left in the run folder by a
 * process that no longer runs (killed inside a write): "<file>.safetensors.tmp.<pid>" of the
 * safetensors writer, ".curves.png.tmp<pid>" of the PNG writer, or "log.csv.tmp" of a resume
 * (this process rewrites that one anyway). A temporary file of a live process other than this
 * one is kept. */
static int stale_tmp(const char *name)
{
    static const char *const prefixes[] = {"last.safetensors.tmp.", "best.safetensors.tmp.",
                                           "model.safetensors.tmp.", ".curves.png.tmp"};
    if (!strcmp(name, "log.csv.tmp")) return 1;
    for (size_t k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++) {
        size_t n = strlen(prefixes[k]);
        if (strncmp(name, prefixes[k], n) || !name[n]) continue;
        char *end = NULL;
        long pid = strtol(name + n, &end, 10);
        if (*end || pid <= 0) return 0;
        if (pid == (long)getpid()) return 0;
        return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
    }
    return 0;
}

/* Remove the temporary files that a killed run left in its folder (stale_tmp), each with a
 * line in the log. */
static void remove_stale_tmp(diffcl_trainer *tr)
{
    DIR *d = opendir(tr->o.out_dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!stale_tmp(e->d_name)) continue;
        char p[4096 + 256];
        snprintf(p, sizeof p, "%s/%s", tr->o.out_dir, e->d_name);
        if (unlink(p) == 0)
            dc_log(tr->ctx, DIFFCL_LOG_INFO, "removed %s, left by an interrupted run", p);
    }
    closedir(d);
}

/* The start line: method, layout, cases and their list, iterations, split, patch, batch,
 * threads and what this process may use (affinity mask, cgroup quota), output. */
static void log_start(const diffcl_trainer *tr)
{
    const diffcl_train_options *o = &tr->o;
    char patch[64];
    if (o->dims == 2)
        snprintf(patch, sizeof patch, "%lldx%lld", (long long)o->patch[1], (long long)o->patch[2]);
    else
        snprintf(patch, sizeof patch, "%lldx%lldx%lld", (long long)o->patch[0],
                 (long long)o->patch[1], (long long)o->patch[2]);
    /* the thread count, and what this process may use (issue 23: affinity mask, cgroup quota) */
    char cpus[96];
    int affinity = 0;
    double quota = 0;
    int usable = dc_cpu_budget(&affinity, &quota);
    if (quota > 0)
        snprintf(cpus, sizeof cpus, "%d usable CPUs: %d in the affinity mask, cgroup quota %.2f",
                 usable, affinity, quota);
    else
        snprintf(cpus, sizeof cpus, "%d usable CPUs", usable);
    char cases[300];
    const char *list = diffcl_dataset_list(tr->train_set);
    snprintf(cases, sizeof cases, "%lld cases %s%s", (long long)diffcl_dataset_size(tr->train_set),
             list ? "of " : "found", list ? list : "");
    dc_log(tr->ctx, DIFFCL_LOG_INFO,
           "training %s, %s, %s, %lld iterations, %lld labeled / %lld unlabeled cases, "
           "patch %s, batch %d+%d, %d threads (%s), output %s",
           o->method == DIFFCL_METHOD_DIFFCL ? "Diff-CL" : "supervised",
           diffcl_layout_name(diffcl_dataset_layout(tr->train_set)), cases, (long long)o->iters,
           (long long)tr->split.n_labeled, (long long)tr->split.n_unlabeled, patch,
           o->batch_labeled, o->batch_unlabeled, diffcl_context_threads(tr->ctx), cpus, o->out_dir);
}

/* One progress line: the losses, ramp-up, agreement, learning rate, rate and ETA, and the
 * validation Dice when @p val is a number. */
static void log_progress(const diffcl_trainer *tr, const diffcl_train_stats *stp, double rate,
                         double val)
{
    const diffcl_train_options *o = &tr->o;
    const diffcl_train_stats st = *stp;
    int at_val = isfinite(val);
    char eta[32];
    fmt_eta(eta, sizeof eta, (double)(o->iters - tr->it) / (rate > 0 ? rate : 1));
    char vbuf[48] = "";
    if (at_val && isfinite(val)) snprintf(vbuf, sizeof vbuf, " val Dice %.4f", val);
    if (o->method == DIFFCL_METHOD_DIFFCL)
        dc_log(tr->ctx, DIFFCL_LOG_INFO,
               "it %lld/%lld loss %.4f (cs %.4f ds %.4f | pseudo cs %.4f ds %.4f cl %.4f) mu %.2f "
               "agree %.3f lr %.5f %.2f it/s ETA %s%s",
               (long long)tr->it, (long long)o->iters, st.loss, st.cs_sup, st.ds_sup, st.cs_pseudo,
               st.ds_pseudo, st.contrast, st.mu, st.agreement, st.lr, rate, eta, vbuf);
    else
        dc_log(tr->ctx, DIFFCL_LOG_INFO, "it %lld/%lld loss %.4f lr %.5f %.2f it/s ETA %s%s",
               (long long)tr->it, (long long)o->iters, st.loss, st.lr, rate, eta, vbuf);
}

diffcl_status diffcl_trainer_run(diffcl_trainer *tr)
{
    DC_CHECK_ARG(tr, "diffcl_trainer_run: trainer is NULL");
    const diffcl_train_options *o = &tr->o;
    char csv_path[4096];
    path_in(csv_path, sizeof csv_path, tr, "log.csv");
    int root = dc_dist_rank(tr->dist) == 0; /* MPI: only rank 0 validates, logs and writes */
    int have_header = 0;
    if (root) remove_stale_tmp(tr);
    if (root && tr->it > 0) {
        if (tr->n_loss == 0)
            DC_TRY(resume_log(tr, csv_path, &have_header)); /* from a checkpoint */
        else
            have_header = 1; /* the same trainer runs on */
    }
    FILE *csv = root ? fopen(csv_path, have_header ? "a" : "w") : fopen("/dev/null", "w");
    if (!csv) return dc_error(DIFFCL_ERR_IO, "cannot write %s: %s", csv_path, strerror(errno));
    if (!have_header) fputs(CSV_HEADER, csv);
    if (fflush(csv) != 0) {
        diffcl_status e = dc_error(DIFFCL_ERR_IO, "cannot write %s: %s", csv_path, strerror(errno));
        fclose(csv);
        return e;
    }
    if (root) log_start(tr);
    diffcl_status s = DIFFCL_OK;
    double t_start = wall();
    int64_t it_start = tr->it;
    while (tr->it < o->iters) {
        diffcl_train_stats st = {sizeof st, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        s = diffcl_trainer_step(tr, &st);
        if (s != DIFFCL_OK) {
            if (s == DIFFCL_ERR_NUMERIC)
                dc_log(tr->ctx, DIFFCL_LOG_ERROR,
                       "%s; the last good checkpoint is %s/last.safetensors", diffcl_last_error(),
                       o->out_dir);
            break;
        }
        double val = NAN;
        int at_val = tr->it % o->val_every == 0 || tr->it == o->iters, improved = 0;
        if (at_val && root) {
            s = validate(tr, &val, &improved);
            if (s != DIFFCL_OK) break;
        }
        /* the row before the checkpoint: a run killed between the two resumes from the previous
         * checkpoint, and the rows past it are dropped and logged again (resume_log) */
        errno = 0;
        fprintf(csv, "%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.4g,%.6g,%.4g,%.4g,%.4g,%.6g\n",
                (long long)st.iteration, st.loss, st.cs_sup, st.ds_sup, st.cs_pseudo, st.ds_pseudo,
                st.contrast, st.mu, st.lr, st.agreement, st.cs_fg_fraction, st.seconds, val);
        if (fflush(csv) != 0 || ferror(csv)) {
            s = dc_error(DIFFCL_ERR_IO, "cannot append to %s: %s (the last checkpoint is kept)",
                         csv_path, strerror(errno ? errno : EIO));
            break;
        }
        if (at_val && root) {
            s = checkpoint(tr, improved);
            if (s != DIFFCL_OK) break;
        }
        if (root && (tr->it % o->log_every == 0 || at_val || tr->it == o->iters))
            log_progress(tr, &st, (double)(tr->it - it_start) / fmax(wall() - t_start, 1e-9),
                         at_val ? val : NAN);
        char msg[96];
        snprintf(msg, sizeof msg, "loss %.4f", st.loss);
        if (dc_progress(tr->ctx, "train", tr->it, o->iters, msg)) {
            s = dc_error(DIFFCL_ERR_CANCELLED, "training cancelled at iteration %lld",
                         (long long)tr->it);
            break;
        }
    }
    fclose(csv);
    if (!root) return s;
    /* the curves are drawn after an error too (they show where the run stopped); the error's
     * message is kept, a failed drawing is only a warning */
    char why[1024] = "";
    if (s != DIFFCL_OK) snprintf(why, sizeof why, "%s", diffcl_last_error());
    char png[4096];
    path_in(png, sizeof png, tr, "curves.png");
    diffcl_status ps = dc_plot_curves(png, tr->loss_hist, tr->n_loss, tr->val_it, tr->val_dice,
                                      tr->n_val, o->iters);
    if (ps != DIFFCL_OK)
        dc_log(tr->ctx, DIFFCL_LOG_WARN, "could not draw %s: %s", png, diffcl_last_error());
    if (s != DIFFCL_OK && ps != DIFFCL_OK) return dc_error(s, "%s", why);
    return s;
}
