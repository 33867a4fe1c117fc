/* patchsweep top RESULTS.h5 [-k 20] [--site z] [--edges]: the (node, position) cells with the
 * largest mean |exact effect| over prompts, with their tokens, the baselines, and each cell's rank
 * under every estimator in the file: a quick look without Python. --edges: the (edge, position)
 * cells of an edge job, ranked under eap, eap_ig, eap_ig_act. Works on unfinished files (cells
 * not computed yet are NaN and skipped). Read, aggregate, rank, print: one function each. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/cli.h"
#include "patchsweep/core.h"
#include "patchsweep/job.h"
#include "patchsweep/model.h"
#include "patchsweep/results.h"
#include "patchsweep/store.h"

static const char *const node_estimators[N_ESTIMATES] = {"atp", "atp_qk", "atp_star"};
static const char *const edge_estimators[N_ESTIMATES] = {"eap", "eap_ig", "eap_ig_act"};
_Static_assert((int)N_EDGE_ESTIMATES == (int)N_ESTIMATES, "one estimator column per edge estimator");
static const char *const *estimator_names = node_estimators; /* edge_estimators with --edges */

typedef struct {
    const char *path, *site, *metric;
    int k, edges;
} TopOptions;

static int parse_options(int argc, char **argv, TopOptions *o) {
    *o = (TopOptions){NULL, NULL, NULL, 20, 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-k") == 0 && i + 1 < argc) {
            char *end;
            long k = strtol(argv[++i], &end, 10);
            if (*end || k < 1 || k > 1000000) return ps_fail(PS_EUSER, "top: -k must be a positive integer, got \"%s\"", argv[i]);
            o->k = (int)k;
        } else if (strcmp(argv[i], "--site") == 0 && i + 1 < argc) {
            Site s;
            o->site = argv[++i];
            if (site_from_name(o->site, &s)) return ps_fail(PS_EUSER, "top: --site \"%s\" is not a site", o->site);
        } else if (strcmp(argv[i], "--edges") == 0) {
            o->edges = 1;
        } else if (strcmp(argv[i], "--metric") == 0 && i + 1 < argc) {
            o->metric = argv[++i];
        } else if (argv[i][0] != '-' && !o->path) {
            o->path = argv[i];
        } else {
            return ps_fail(PS_EUSER, "top: unexpected argument \"%s\"; %s", argv[i], command_usage("top"));
        }
    }
    if (o->edges && o->site) return ps_fail(PS_EUSER, "top: --site selects nodes; with --edges every edge is ranked");
    return o->path ? PS_OK : ps_fail(PS_EUSER, "top: %s", command_usage("top"));
}

/* What the table shows of each cell (node n, column s at n * S + s). */
typedef struct {
    double *mean_abs, *mean;       /* over the prompts that have the cell; NaN where none */
    int *prompts;                  /* how many prompts have the cell computed */
    int *estimator_rank[N_ESTIMATES]; /* 1 = largest mean |estimate|, ties at their block's last rank; NULL when absent */
} CellTable;

/* Mean over prompts of x (or |x|) per cell, NaN-skipping; NaN for cells outside the site. The
 * number of prompts behind each mean goes to count (when not NULL). */
static void cell_means(const Results *r, const float *x, int absolute, const char *site, double *out, int *count) {
    size_t cells = (size_t)r->N * r->S;
    for (size_t c = 0; c < cells; c++) {
        double sum = 0.0;
        int n = 0;
        for (int p = 0; p < r->P; p++) {
            float v = x[(size_t)p * cells + c];
            if (!isnan(v)) sum += absolute ? fabs(v) : v, n++;
        }
        int in_site = !site || strcmp(r->node_sites[c / (size_t)r->S], site) == 0;
        out[c] = n && in_site ? sum / n : NAN;
        if (count) count[c] = n;
    }
}

/* Cells in order of key, largest first. */
static int *rank_cells(const double *key, size_t cells) {
    int *order = xmalloc(sizeof(int) * cells);
    order_by_key(key, (int)cells, order);
    return order;
}

/* An estimator's rank of each cell: the number of cells with a key at least as large, so a block
 * of tied cells all get the block's last rank. The estimator cannot order them; verifying in its
 * order is sure to reach all of them only there (the analysis package's convention too). A block
 * of ties at zero reads as one rank at the bottom, not as an order. */
static int *estimator_ranks(const double *key, size_t cells) {
    int *order = rank_cells(key, cells), *rank = xmalloc(sizeof(int) * cells);
    for (size_t i = cells; i-- > 0;) {
        int c = order[i];
        rank[c] = i + 1 < cells && key[c] == key[order[i + 1]] ? rank[order[i + 1]] : (int)i + 1;
    }
    free(order);
    return rank;
}

static int aggregate(const Results *r, const float *exact, const char *site, CellTable *t) {
    size_t cells = (size_t)r->N * r->S;
    memset(t, 0, sizeof *t);
    t->mean_abs = xmalloc(sizeof(double) * cells);
    t->mean = xmalloc(sizeof(double) * cells);
    t->prompts = xmalloc(sizeof(int) * cells);
    cell_means(r, exact, 1, site, t->mean_abs, t->prompts);
    cell_means(r, exact, 0, site, t->mean, NULL);
    for (int e = 0; e < N_ESTIMATES; e++) {
        float *est;
        int rc = results_read_cells(r, estimator_names[e], &est);
        if (rc) return rc;
        if (!est) continue;
        double *key = xmalloc(sizeof(double) * cells);
        cell_means(r, est, 1, site, key, NULL);
        t->estimator_rank[e] = estimator_ranks(key, cells);
        free(key), free(est);
    }
    return PS_OK;
}

static void free_table(CellTable *t) {
    free(t->mean_abs), free(t->mean), free(t->prompts);
    for (int e = 0; e < N_ESTIMATES; e++) free(t->estimator_rank[e]);
}

/* The token column j holds in the first prompt that has it (base run), as the model's tokenizer
 * spells it when the model folder still has one. Named and from-the-end columns may hold other
 * tokens in other prompts. */
static void token_label(const Results *r, const Tokenizer *tok, int j, char *out, size_t cap) {
    int p = 0;
    while (p < r->P - 1 && r->prompt_positions[(size_t)p * r->S + j] == -2) p++;
    int pos = r->prompt_positions[(size_t)p * r->S + j];
    if (pos < 0) {
        snprintf(out, cap, pos == -1 ? "(all)" : "-");
        return;
    }
    int id = r->base_tokens[(size_t)p * r->T + pos];
    const char *word = tokenizer_token(tok, id);
    if (word) snprintf(out, cap, "\"%.40s\"", word);
    else snprintf(out, cap, "%d", id);
}

/* The model folder's tokenizer: at the folder the file names, or where it lies relative to the
 * results file (both were moved together); NULL when neither has one. */
static Tokenizer *load_tokenizer(const Results *r) {
    Tokenizer *tok = NULL;
    cJSON *cfg = cJSON_Parse(r->model_config);
    const cJSON *vocab = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "vocab") : NULL;
    char *relative = h5_string_attr(r->file, "model_dir_relative"), folder[PATH_CAP], moved[PATH_CAP], path[PATH_CAP];
    path_dirname(folder, sizeof folder, r->path);
    const char *dirs[2] = {r->model_dir, NULL};
    if (relative && path_join(moved, sizeof moved, folder, relative) == PS_OK) dirs[1] = moved;
    for (int i = 0; i < 2 && !tok && cJSON_IsNumber(vocab); i++)
        if (dirs[i] && path_join(path, sizeof path, dirs[i], "tokenizer.json") == PS_OK && file_exists(path) &&
            tokenizer_load(&tok, path, vocab->valueint))
            tok = NULL;
    free(relative);
    cJSON_Delete(cfg);
    return tok;
}

/* The mean over the prompts that have it (a partial file has NaN baselines for the rest). */
static double mean_finite(const double *x, int n, int *count) {
    double sum = 0.0;
    *count = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) sum += x[i], ++*count;
    return *count ? sum / *count : NAN;
}

/* Edge names are longer than node names ("L10.H11->L11.KV7.k"). */
static int name_width(const Results *r) { return strcmp(r->group, "/edges") == 0 ? 24 : 14; }

/* Rows of the table: the best cells with want_all = whether they must be present in every prompt. */
static void print_rows(const Results *r, const CellTable *t, const Tokenizer *tok, const int *order, int k, int want_all) {
    size_t cells = (size_t)r->N * r->S;
    int rank = 0, previous = -1; /* the table's own rank: tied rows share the first (1, 2, 2, 4) */
    for (size_t i = 0, shown = 0; i < cells && (int)shown < k && !isnan(t->mean_abs[order[i]]); i++) {
        int c = order[i];
        if ((t->prompts[c] == r->P) != want_all) continue;
        shown++;
        if (previous < 0 || t->mean_abs[c] != t->mean_abs[previous]) rank = (int)shown;
        previous = c;
        char token[64];
        token_label(r, tok, c % r->S, token, sizeof token);
        printf("%4d  %-*s %4s  %-14s %7d %12.4g %12.4g", rank, name_width(r), r->node_names[c / r->S], r->position_names[c % r->S],
               token, t->prompts[c], t->mean[c], t->mean_abs[c]);
        for (int e = 0; e < N_ESTIMATES; e++)
            if (t->estimator_rank[e]) printf(" %9d", t->estimator_rank[e][c]);
        printf("\n");
    }
}

static void print_table(const Results *r, const CellTable *t, const TopOptions *o) {
    size_t cells = (size_t)r->N * r->S;
    int with_base, with_source;
    double base = mean_finite(r->base, r->P, &with_base), source = mean_finite(r->source, r->P, &with_source);
    const char *what = name_width(r) == 24 ? "edge" : "node";
    printf("%s: %d prompts x %d %ss x %d positions; corruption %s, direction %s, metric %s\n", r->path, r->P, r->N, what,
           r->S, r->corruption, r->direction, r->metrics[r->metric]);
    if (with_base < r->P)
        printf("a partial file: %d of %d prompts have results so far (rerun the job to finish it)\n", with_base, r->P);
    printf("baseline, mean over those prompts: base %.4g", base);
    if (with_source) printf(", source %.4g (source - base %.4g)\n", source, source - base);
    else printf(", no source run (%s corruption)\n", r->corruption);
    int partial_cells = 0;
    for (size_t c = 0; c < cells; c++) partial_cells += !isnan(t->mean_abs[c]) && t->prompts[c] < r->P;
    printf("top %d%s%s (%s, position) cells by mean |exact effect| over the prompts that have them%s\n", o->k,
           o->site ? " " : "", o->site ? o->site : "", what, partial_cells ? ", present in every prompt" : "");
    printf("%4s  %-*s %4s  %-14s %7s %12s %12s", "rank", name_width(r), what, "pos", "token", "prompts", "mean effect",
           "mean |effect|");
    int any_estimator = 0;
    for (int e = 0; e < N_ESTIMATES; e++)
        if (t->estimator_rank[e]) printf(" %9s", estimator_names[e]), any_estimator = 1;
    printf("\n");
    Tokenizer *tok = load_tokenizer(r);
    int *order = rank_cells(t->mean_abs, cells);
    print_rows(r, t, tok, order, o->k, 1);
    if (partial_cells) { /* means over fewer prompts are not comparable with full ones: apart */
        printf("\ncells present in only some prompts (past a shorter prompt's end, or not computed yet):\n");
        print_rows(r, t, tok, order, o->k, 0);
    }
    if (any_estimator)
        printf("(estimator columns: the cell's rank by that estimator's mean |estimate| over all cells; cells it "
               "ties all get the tie block's last rank, where verifying in its order is sure to reach them)\n");
    free(order);
    if (tok) tokenizer_free(tok);
}

int cmd_top(int argc, char **argv) {
    TopOptions o;
    Results r;
    CellTable table;
    memset(&table, 0, sizeof table);
    float *exact = NULL;
    int rc = parse_options(argc, argv, &o);
    if (rc) return report_error(rc);
    estimator_names = o.edges ? edge_estimators : node_estimators;
    rc = o.edges ? results_open_edges(&r, o.path, 0, o.metric) : results_open(&r, o.path, 0, o.metric);
    if (!rc) rc = results_read_cells(&r, "exact", &exact);
    if (!rc && !exact) rc = ps_fail(PS_EUSER, "%s: holds no exact effects (a job with \"exact\": false)", o.path);
    if (!rc && o.site) { /* a site the file lacks is a mistake, not an empty table */
        int found = 0;
        for (int n = 0; n < r.N && !found; n++) found = strcmp(r.node_sites[n], o.site) == 0;
        if (!found) rc = ps_fail(PS_EUSER, "%s: has no nodes of site %s", o.path, o.site);
    }
    if (!rc) rc = aggregate(&r, exact, o.site, &table);
    if (!rc) print_table(&r, &table, &o);
    free_table(&table);
    free(exact);
    results_close(&r);
    return report_error(rc);
}
