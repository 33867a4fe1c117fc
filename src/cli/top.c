/* patchsweep top RESULTS.h5 [-k 20] [--site z]: the (node, position) cells with the largest
 * mean |exact effect| over prompts, with their tokens, the baselines, and each cell's rank under
 * every estimator in the file: a quick look without Python. Works on unfinished files (cells
 * not computed yet are NaN and skipped). */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/cli.h"
#include "patchsweep/core.h"
#include "patchsweep/job.h"
#include "patchsweep/model.h"
#include "patchsweep/store.h"

/* mean over prompts of |x[p, n, s]| (NaN-skipping), into out[n * S + s]; NaN where none */
static void mean_abs(const float *x, int P, int N, int S, double *out) {
    for (size_t c = 0; c < (size_t)N * S; c++) {
        double sum = 0.0;
        int count = 0;
        for (int p = 0; p < P; p++) {
            float v = x[(size_t)p * N * S + c];
            if (!isnan(v)) sum += fabs(v), count++;
        }
        out[c] = count ? sum / count : NAN;
    }
}

static const double *sort_key;
static int by_key_desc(const void *a, const void *b) {
    double x = sort_key[*(const int *)a], y = sort_key[*(const int *)b];
    if (isnan(x)) return isnan(y) ? 0 : 1;
    if (isnan(y)) return -1;
    return x < y ? 1 : x > y ? -1 : 0;
}

int cmd_top(int argc, char **argv) {
    const char *path = NULL, *site = NULL;
    int k = 20;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-k") == 0 && i + 1 < argc) k = atoi(argv[++i]);
        else if (strcmp(argv[i], "--site") == 0 && i + 1 < argc) site = argv[++i];
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else return report_error(ps_fail(PS_EUSER, "top: unexpected argument \"%s\"; usage: patchsweep top RESULTS.h5 [-k 20] [--site z]", argv[i]));
    }
    Site filter;
    if (!path) return report_error(ps_fail(PS_EUSER, "top: usage: patchsweep top RESULTS.h5 [-k 20] [--site z]"));
    if (site && site_from_name(site, &filter)) return report_error(ps_fail(PS_EUSER, "--site \"%s\" is not a site", site));
    if (k < 1) return report_error(ps_fail(PS_EUSER, "-k must be a positive integer"));
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (!file_exists(path)) return report_error(ps_fail(PS_EUSER, "%s: no such file", path));
    hid_t f = -1;
    if (file_exists(path) && H5Fis_hdf5(path) > 0) f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    char *format = f >= 0 ? h5_string_attr(f, "format") : NULL;
    if (!format || strcmp(format, "patchsweep") != 0) {
        free(format);
        if (f >= 0) H5Fclose(f);
        return report_error(ps_fail(PS_EUSER, "%s: not a patchsweep results file", path));
    }
    free(format);
    hsize_t dims[3], pdims[2], sdims[1], bdims[1];
    int rank;
    float *exact = h5_read_all(f, "/effects/exact", H5T_NATIVE_FLOAT, sizeof(float), dims, &rank);
    if (!exact) {
        H5Fclose(f);
        return report_error(ps_fail(PS_EUSER, "%s: holds no exact effects (a job with \"exact\": false)", path));
    }
    int P = (int)dims[0], N = (int)dims[1], S = (int)dims[2];
    size_t name_w, site_w;
    char *names = h5_read_strings(f, "/nodes/name", &name_w), *sites = h5_read_strings(f, "/nodes/site", &site_w);
    int *positions = h5_read_all(f, "/positions", H5T_NATIVE_INT, sizeof(int), sdims, &rank);
    int *tokens = h5_read_all(f, "/prompts/base_tokens", H5T_NATIVE_INT, sizeof(int), pdims, &rank);
    double *base = h5_read_all(f, "/baseline/base", H5T_NATIVE_DOUBLE, sizeof(double), bdims, &rank);
    double *source = h5_read_all(f, "/baseline/source", H5T_NATIVE_DOUBLE, sizeof(double), bdims, &rank);
    char *metric = h5_string_attr(f, "metric"), *direction = h5_string_attr(f, "direction"), *corruption = h5_string_attr(f, "corruption");
    char *model_dir = h5_string_attr(f, "model_dir"), *cfg_json = h5_string_attr(f, "model_config");
    int T = (int)pdims[1];

    /* token strings from the model folder's tokenizer, if it is still there */
    Tokenizer *tok = NULL;
    cJSON *cfg = cfg_json ? cJSON_Parse(cfg_json) : NULL;
    const cJSON *vocab = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "vocab") : NULL;
    char tok_path[4200];
    if (model_dir && cJSON_IsNumber(vocab)) {
        path_join(tok_path, sizeof tok_path, model_dir, "tokenizer.json");
        if (file_exists(tok_path) && tokenizer_load(&tok, tok_path, vocab->valueint)) tok = NULL;
    }
    cJSON_Delete(cfg);

    size_t cells = (size_t)N * S;
    double *score = xmalloc(sizeof(double) * cells), *signed_mean = xmalloc(sizeof(double) * cells);
    mean_abs(exact, P, N, S, score);
    for (size_t c = 0; c < cells; c++) { /* the signed mean, to show the direction */
        double sum = 0;
        int count = 0;
        for (int p = 0; p < P; p++)
            if (!isnan(exact[(size_t)p * cells + c])) sum += exact[(size_t)p * cells + c], count++;
        signed_mean[c] = count ? sum / count : NAN;
        if (site && strcmp(sites + (c / S) * site_w, site) != 0) score[c] = NAN;
    }
    /* each estimator's rank of every cell, by its own mean |estimate| */
    static const char *const est_names[] = {"atp", "atp_qk", "atp_star"};
    int *est_rank[3] = {NULL, NULL, NULL};
    for (int e = 0; e < 3; e++) {
        char dset[64];
        snprintf(dset, sizeof dset, "/effects/%s", est_names[e]);
        hsize_t edims[3];
        float *est = H5Lexists(f, dset, H5P_DEFAULT) > 0 ? h5_read_all(f, dset, H5T_NATIVE_FLOAT, sizeof(float), edims, &rank) : NULL;
        if (!est) continue;
        double *m = xmalloc(sizeof(double) * cells);
        mean_abs(est, P, N, S, m);
        for (size_t c = 0; c < cells; c++)
            if (site && strcmp(sites + (c / S) * site_w, site) != 0) m[c] = NAN;
        int *order = xmalloc(sizeof(int) * cells);
        for (size_t c = 0; c < cells; c++) order[c] = (int)c;
        sort_key = m;
        qsort(order, cells, sizeof(int), by_key_desc);
        est_rank[e] = xmalloc(sizeof(int) * cells);
        for (size_t r = 0; r < cells; r++) est_rank[e][order[r]] = (int)r + 1;
        free(order), free(m), free(est);
    }
    int *order = xmalloc(sizeof(int) * cells);
    for (size_t c = 0; c < cells; c++) order[c] = (int)c;
    sort_key = score;
    qsort(order, cells, sizeof(int), by_key_desc);

    double mb = 0, ms = 0;
    for (int p = 0; p < P; p++) mb += base[p] / P, ms += source[p] / P;
    printf("%s: %d prompts x %d nodes x %d positions; corruption %s, direction %s, metric %s\n", path, P, N, S,
           corruption, direction, metric);
    printf("baseline, mean over prompts: base %.4g, source %.4g (source - base %.4g)\n", mb, ms, ms - mb);
    printf("top %d%s%s (node, position) cells by mean |exact effect| over prompts; tokens are prompt 0's base run's\n", k,
           site ? " " : "", site ? site : "");
    printf("%4s  %-14s %4s  %-14s %12s %12s", "rank", "node", "pos", "token", "mean effect", "mean |effect|");
    for (int e = 0; e < 3; e++)
        if (est_rank[e]) printf(" %9s", est_names[e]);
    printf("\n");
    for (int r = 0; r < k && r < (int)cells && !isnan(score[order[r]]); r++) {
        int c = order[r], n = c / S, s = c % S, pos = positions[s];
        char token[64] = "(all)";
        if (pos >= 0) {
            int id = pos < T ? tokens[pos] : -1;
            const char *word = tokenizer_token(tok, id);
            if (word) snprintf(token, sizeof token, "\"%.40s\"", word);
            else snprintf(token, sizeof token, "%d", id);
        }
        printf("%4d  %-14s %4s  %-14s %12.4g %12.4g", r + 1, names + (size_t)n * name_w,
               pos < 0 ? "all" : (snprintf(tok_path, 16, "%d", pos), tok_path), token, signed_mean[c], score[c]);
        for (int e = 0; e < 3; e++)
            if (est_rank[e]) printf(" %9d", est_rank[e][c]);
        printf("\n");
    }
    if (est_rank[0] || est_rank[1] || est_rank[2]) printf("(estimator columns: the cell's rank by that estimator's mean |estimate|)\n");
    for (int e = 0; e < 3; e++) free(est_rank[e]);
    free(order), free(score), free(signed_mean), free(exact), free(names), free(sites), free(positions), free(tokens);
    free(base), free(source), free(metric), free(direction), free(corruption), free(model_dir), free(cfg_json);
    if (tok) tokenizer_free(tok);
    H5Fclose(f);
    return 0;
}
