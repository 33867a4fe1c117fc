/* Job spec parsing and validation (docs/job.md). Unknown keys are errors: a typo must not
 * silently run a different experiment. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/job.h"
#include "patchsweep/plan.h"
#include "circuits_spec.h"
#include "edge_filter.h"

static const char *const corruption_names[] = {"pair", "gaussian", "mean", "zero", "resample"};
static const char *const direction_names[] = {"denoise", "noise"};
static const char *const metric_names[] = {"logit_diff", "logprob", "prob", "kl"};
static const char *const estimate_names[N_ESTIMATES] = {"atp", "atp_qk", "atp_star"};

const char *corruption_name(Corruption c) { return corruption_names[c]; }
const char *direction_name(Direction d) { return direction_names[d]; }
const char *metric_name(MetricKind m) { return metric_names[m]; }
const char *estimate_name(Estimate e) { return estimate_names[e]; }

static int lookup_name(const char *const *names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return i;
    return -1;
}

/* "a, b, c" for error messages */
static const char *name_list(const char *const *names, int n) {
    static char buf[512];
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n && used < sizeof buf; i++)
        used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s", i ? ", " : "", names[i]);
    return buf;
}

/* "resid_pre, attn_out, ..." for error messages */
static const char *site_list(void) {
    const char *names[N_SITES];
    for (int i = 0; i < N_SITES; i++) names[i] = site_name((Site)i);
    return name_list(names, N_SITES);
}

static int check_keys(const cJSON *obj, const char *where, const char *const *allowed, int n_allowed) {
    for (const cJSON *it = obj->child; it; it = it->next)
        if (lookup_name(allowed, n_allowed, it->string) < 0)
            return ps_fail(PS_EUSER, "%s: unknown key \"%s\" (expected one of: %s)", where, it->string,
                           name_list(allowed, n_allowed));
    return PS_OK;
}

/* An array of integers >= 0 into a fresh int array. */
static int int_array(const cJSON *arr, const char *where, const char *key, int **out, int *n) {
    if (!cJSON_IsArray(arr)) return ps_fail(PS_EUSER, "%s: \"%s\" must be an array of integers", where, key);
    *n = cJSON_GetArraySize(arr);
    *out = xmalloc(sizeof(int) * (size_t)(*n ? *n : 1));
    int i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < 0 ||
            it->valuedouble > 2e9)
            return ps_fail(PS_EUSER, "%s: %s[%d] must be a non-negative integer", where, key, i);
        (*out)[i] = (int)it->valuedouble;
    }
    return PS_OK;
}

/* key as ids, or key_text as text: exactly one when required, at most one otherwise. */
static int ids_or_text(const cJSON *obj, const char *where, const char *key, int required, int **ids, int *n,
                       char **text) {
    char text_key[32];
    snprintf(text_key, sizeof text_key, "%s_text", key);
    const cJSON *as_ids = cJSON_GetObjectItemCaseSensitive(obj, key), *as_text = cJSON_GetObjectItemCaseSensitive(obj, text_key);
    if (as_ids && as_text) return ps_fail(PS_EUSER, "%s: give \"%s\" or \"%s\", not both", where, key, text_key);
    if (!as_ids && !as_text) return required ? ps_fail(PS_EUSER, "%s: missing key \"%s\" (or \"%s\")", where, key, text_key) : PS_OK;
    if (as_ids) return int_array(as_ids, where, key, ids, n);
    if (!cJSON_IsString(as_text)) return ps_fail(PS_EUSER, "%s: \"%s\" must be a string", where, text_key);
    *text = xstrdup(as_text->valuestring);
    *n = -1; /* known once job_check has tokenized it */
    return PS_OK;
}

/* A position written in a job: an integer, counted from the end when negative (-1 = the last
 * token), within +-2^30 so that T + v never overflows. */
static int position_value(const cJSON *it, const char *where, const char *what, int *out) {
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || fabs(it->valuedouble) > 1073741824.0)
        return ps_fail(PS_EUSER, "%s: %s must be an integer position (negative: from the end, -1 = the last token)", where,
                       what);
    *out = (int)it->valuedouble;
    return PS_OK;
}

/* A prompt's named positions: {"S1": 3, "IO": 2, "END": -1} (negative from its end). */
static int parse_named_positions(Prompt *p, const cJSON *obj, const char *where) {
    if (!cJSON_IsObject(obj)) return ps_fail(PS_EUSER, "%s: \"positions\" must be an object of names and positions", where);
    int n = cJSON_GetArraySize(obj), i = 0, rc = PS_OK;
    p->position_names = xcalloc((size_t)(n ? n : 1), sizeof(char *));
    p->named_positions = xcalloc((size_t)(n ? n : 1), sizeof(int));
    for (const cJSON *it = obj->child; it && !rc; it = it->next, i++) {
        char what[64];
        snprintf(what, sizeof what, "positions.%.40s", it->string);
        if (!it->string[0] || strlen(it->string) >= 32)
            return ps_fail(PS_EUSER, "%s: \"positions\": a position's name has 1 to 31 characters", where);
        p->position_names[i] = xstrdup(it->string);
        p->n_named = i + 1;
        rc = position_value(it, where, what, &p->named_positions[i]);
    }
    return rc;
}

static int parse_prompt(Prompt *p, const cJSON *obj, const char *where) {
    static const char *const keys[] = {"clean", "corrupt", "answer", "wrong", "clean_text", "corrupt_text", "answer_text",
                                       "wrong_text", "noise_positions", "positions"};
    p->answer = p->wrong = -1;
    if (!cJSON_IsObject(obj)) return ps_fail(PS_EUSER, "%s: a prompt must be an object", where);
    int rc = check_keys(obj, where, keys, 10), n = 0;
    const cJSON *named = cJSON_GetObjectItemCaseSensitive(obj, "positions");
    if (!rc && named) rc = parse_named_positions(p, named, where);
    const cJSON *noised = cJSON_GetObjectItemCaseSensitive(obj, "noise_positions");
    if (!rc && noised) {
        rc = int_array(noised, where, "noise_positions", &p->noise_positions, &p->n_noise_positions);
        if (!rc && p->n_noise_positions == 0) rc = ps_fail(PS_EUSER, "%s: \"noise_positions\" is empty", where);
    }
    if (!rc) rc = ids_or_text(obj, where, "clean", 1, &p->clean, &p->T, &p->clean_text);
    if (!rc && p->T == 0) rc = ps_fail(PS_EUSER, "%s: \"clean\" is empty", where);
    if (!rc) rc = ids_or_text(obj, where, "corrupt", 0, &p->corrupt, &n, &p->corrupt_text);
    if (!rc && p->corrupt && !p->clean_text && n != p->T) /* with text, job_check compares the token counts */
        rc = ps_fail(PS_EUSER, "%s: \"corrupt\" has %d token%s but \"clean\" has %d (they must align)", where, n, plural_s(n), p->T);
    if (p->T < 0) p->T = 0;
    for (int k = 0; k < 2 && !rc; k++) { /* answer and wrong: one token id, or a text of one token */
        const char *key = k ? "wrong" : "answer";
        int *value = k ? &p->wrong : &p->answer;
        char **text = k ? &p->wrong_text : &p->answer_text, text_key[16];
        snprintf(text_key, sizeof text_key, "%s_text", key);
        const cJSON *as_text = cJSON_GetObjectItemCaseSensitive(obj, text_key);
        if (as_text && cJSON_GetObjectItemCaseSensitive(obj, key))
            rc = ps_fail(PS_EUSER, "%s: give \"%s\" or \"%s\", not both", where, key, text_key);
        else if (as_text && (!cJSON_IsString(as_text) || !as_text->valuestring[0]))
            rc = ps_fail(PS_EUSER, "%s: \"%s\" must be a non-empty string", where, text_key);
        else if (as_text)
            *text = xstrdup(as_text->valuestring), *value = 0; /* resolved by job_check */
        else {
            long v = -1;
            rc = json_get_int(obj, key, where, 0, 0, JSON_SIZE_MAX, &v); /* a token id; job_check checks the vocabulary */
            *value = (int)v;
        }
    }
    return rc;
}

/* The next line of a file's text that is not blank (blank lines are allowed), cut out in place
 * and without its leading spaces; *line counts the lines passed; NULL at the end. */
static char *next_nonblank_line(char **cursor, int *line) {
    while (*cursor && **cursor) {
        char *s = *cursor, *next = strchr(s, '\n');
        if (next) *next++ = 0;
        *cursor = next;
        ++*line;
        while (*s == ' ' || *s == '\t' || *s == '\r') s++;
        if (*s) return s;
    }
    return NULL;
}

static int parse_prompts_file(Job *job, const char *path) {
    char *text;
    int rc = read_text_file(path, &text, NULL);
    if (rc) return rc;
    int cap = 16, line = 0;
    job->prompts = xcalloc((size_t)cap, sizeof(Prompt));
    char *cursor = text, *s;
    while (!rc && (s = next_nonblank_line(&cursor, &line))) {
        char where[4200];
        snprintf(where, sizeof where, "%s:%d", path, line);
        cJSON *obj = cJSON_Parse(s);
        rc = cJSON_IsObject(obj) ? json_check_unique_keys(obj, where) : ps_fail(PS_EUSER, "%s: not a JSON object", where);
        if (rc) {
            cJSON_Delete(obj);
            break;
        }
        if (job->n_prompts == cap) {
            job->prompts = xrealloc(job->prompts, sizeof(Prompt) * (size_t)(cap *= 2));
            memset(job->prompts + job->n_prompts, 0, sizeof(Prompt) * (size_t)(cap - job->n_prompts));
        }
        rc = parse_prompt(&job->prompts[job->n_prompts++], obj, where);
        cJSON_Delete(obj);
    }
    free(text);
    return rc;
}

int job_read_prompts_file(const char *path, Prompt **out, int *n) {
    Job holder; /* parse_prompts_file fills a job's prompt list */
    memset(&holder, 0, sizeof holder);
    int rc = parse_prompts_file(&holder, path);
    *out = holder.prompts, *n = holder.n_prompts;
    return rc;
}

/* gaussian.std: "vocabulary" (every token-embedding entry; the default), "subjects" (the
 * embeddings of the tokens the job noises, over all its prompts: ROME's rule on the job's own
 * subjects), or {"corpus": FILE} (the tokens of a file of subjects, one per line, as a JSON list
 * of ids or as text for the model's tokenizer: ROME's rule on a corpus). */
static int parse_noise_std(Job *job, const cJSON *body, const char *where, const char *dir) {
    const cJSON *std = cJSON_GetObjectItemCaseSensitive(body, "std");
    job->noise_std = NOISE_STD_VOCABULARY;
    if (!std) return PS_OK;
    if (cJSON_IsString(std) && strcmp(std->valuestring, "vocabulary") == 0) return PS_OK;
    if (cJSON_IsString(std) && strcmp(std->valuestring, "subjects") == 0) {
        job->noise_std = NOISE_STD_SUBJECTS;
        return PS_OK;
    }
    const cJSON *corpus = cJSON_IsObject(std) && cJSON_GetArraySize(std) == 1 ? cJSON_GetObjectItemCaseSensitive(std, "corpus") : NULL;
    if (!cJSON_IsString(corpus))
        return ps_fail(PS_EUSER, "%s: \"std\" must be \"vocabulary\", \"subjects\" or {\"corpus\": FILE}", where);
    job->noise_std = NOISE_STD_CORPUS;
    if (path_join(job->noise_corpus, sizeof job->noise_corpus, dir, corpus->valuestring))
        return ps_fail_context(PS_EUSER, "%s: std.corpus", where);
    return PS_OK;
}

static int parse_corruption(Job *job, const cJSON *c, const char *where, const char *dir) {
    job->noise_scale = 3.0;
    job->noise_samples = 10;
    if (!c) return PS_OK; /* default: pair */
    if (cJSON_IsString(c)) {
        int i = lookup_name(corruption_names, 5, c->valuestring);
        if (i < 0 || i == CORR_GAUSSIAN)
            return ps_fail(PS_EUSER,
                           "%s: corruption \"%s\" is not known (expected \"pair\", \"mean\", \"zero\", \"resample\" or "
                           "{\"gaussian\": {...}})",
                           where, c->valuestring);
        job->corruption = (Corruption)i;
        return PS_OK;
    }
    if (!cJSON_IsObject(c) || cJSON_GetArraySize(c) != 1)
        return ps_fail(PS_EUSER, "%s: \"corruption\" must be a name or an object with one key", where);
    const cJSON *body = c->child;
    char inner[4200];
    snprintf(inner, sizeof inner, "%s: corruption.%s", where, body->string);
    if (!cJSON_IsObject(body)) return ps_fail(PS_EUSER, "%s: must be an object", inner);
    int rc;
    long seed = 0;
    if (strcmp(body->string, "resample") == 0) {
        static const char *const keys[] = {"seed"};
        job->corruption = CORR_RESAMPLE;
        if ((rc = check_keys(body, inner, keys, 1)) || (rc = json_get_int(body, "seed", inner, 0, 0, JSON_SEED_MAX, &seed))) return rc;
    } else if (strcmp(body->string, "gaussian") == 0) {
        static const char *const keys[] = {"scale", "positions", "samples", "seed", "std"};
        job->corruption = CORR_GAUSSIAN;
        long samples = 10;
        if ((rc = check_keys(body, inner, keys, 5)) || (rc = json_get_number(body, "scale", inner, 0, &job->noise_scale)) ||
            (rc = json_get_int(body, "samples", inner, 0, 1, 10000, &samples)) ||
            (rc = json_get_int(body, "seed", inner, 0, 0, JSON_SEED_MAX, &seed)) || (rc = parse_noise_std(job, body, inner, dir)))
            return rc;
        if (!(job->noise_scale > 0) || !isfinite(job->noise_scale))
            return ps_fail(PS_EUSER, "%s: \"scale\" must be positive", inner);
        job->noise_samples = (int)samples;
        const cJSON *pos = cJSON_GetObjectItemCaseSensitive(body, "positions");
        if (pos) { /* may be absent when every prompt names its own noise_positions (check_prompts) */
            if ((rc = int_array(pos, inner, "positions", &job->noise_positions, &job->n_noise_positions))) return rc;
            if (job->n_noise_positions == 0) return ps_fail(PS_EUSER, "%s: \"positions\" is empty", inner);
        }
    } else {
        return ps_fail(PS_EUSER, "%s: corruption \"%s\" is not known (expected gaussian or resample)", where, body->string);
    }
    if (seed < 0) return ps_fail(PS_EUSER, "%s: \"seed\" must be a non-negative integer", inner);
    job->seed = (uint64_t)seed;
    return PS_OK;
}

static int parse_name(const cJSON *root, const char *key, const char *where, const char *const *names, int n,
                      int *out) {
    const char *s = NULL;
    int rc = json_get_string(root, key, where, 0, &s);
    if (rc || !s) return rc;
    int i = lookup_name(names, n, s);
    if (i < 0) return ps_fail(PS_EUSER, "%s: %s \"%s\" is not known (expected one of: %s)", where, key, s, name_list(names, n));
    *out = i;
    return PS_OK;
}

static int parse_nodes(Job *job, const cJSON *nodes, const char *where) {
    if (!nodes) return ps_fail(PS_EUSER, "%s: missing key \"nodes\" (which sites to patch: %s)", where, site_list());
    if (!cJSON_IsArray(nodes) || cJSON_GetArraySize(nodes) == 0)
        return ps_fail(PS_EUSER, "%s: \"nodes\" must be a non-empty array of site names", where);
    for (const cJSON *it = nodes->child; it; it = it->next) {
        Site s;
        if (!cJSON_IsString(it) || site_from_name(it->valuestring, &s))
            return ps_fail(PS_EUSER, "%s: nodes[%d] is not a site (expected one of: %s)", where, job->n_sites,
                           site_list());
        for (int i = 0; i < job->n_sites; i++)
            if (job->sites[i] == s) return ps_fail(PS_EUSER, "%s: site \"%s\" is listed twice in nodes", where, site_name(s));
        job->sites[job->n_sites++] = s;
    }
    return PS_OK;
}

static int compare_ints(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* "positions": "each", "all", or a list of columns: positions (negative from the end) and names
 * of positions that every prompt defines in its own "positions" object. None listed twice. */
static int parse_positions(Job *job, const cJSON *pos, const char *where) {
    job->positions = POS_EACH;
    if (!pos) return PS_OK;
    if (cJSON_IsString(pos)) {
        if (strcmp(pos->valuestring, "each") == 0) return PS_OK;
        if (strcmp(pos->valuestring, "all") == 0) {
            job->positions = POS_ALL;
            return PS_OK;
        }
    } else if (cJSON_IsArray(pos)) {
        job->positions = POS_LIST;
        int n = job->n_position_list = cJSON_GetArraySize(pos);
        if (n == 0) return ps_fail(PS_EUSER, "%s: \"positions\" is empty", where);
        job->position_list = xcalloc((size_t)n, sizeof(int));
        job->position_names = xcalloc((size_t)n, sizeof(char *));
        int i = 0, rc = PS_OK;
        for (const cJSON *it = pos->child; it && !rc; it = it->next, i++) {
            char what[48];
            snprintf(what, sizeof what, "positions[%d]", i);
            if (cJSON_IsString(it) && it->valuestring[0] && strlen(it->valuestring) < 32)
                job->position_names[i] = xstrdup(it->valuestring);
            else if (cJSON_IsString(it))
                rc = ps_fail(PS_EUSER, "%s: %s: a position's name has 1 to 31 characters", where, what);
            else
                rc = position_value(it, where, what, &job->position_list[i]);
        }
        if (rc) return rc;
        /* none twice: a sorted copy of the numbers, neighbours compared; names pairwise (a few) */
        int *sorted = xmalloc(sizeof(int) * (size_t)n), n_numbers = 0;
        for (i = 0; i < n; i++)
            if (!job->position_names[i]) sorted[n_numbers++] = job->position_list[i];
        qsort(sorted, (size_t)n_numbers, sizeof(int), compare_ints);
        for (i = 1; i < n_numbers && !rc; i++)
            if (sorted[i] == sorted[i - 1]) rc = ps_fail(PS_EUSER, "%s: position %d is listed twice", where, sorted[i]);
        free(sorted);
        for (i = 0; i < n && !rc; i++)
            for (int k = 0; k < i && !rc && job->position_names[i]; k++)
                if (job->position_names[k] && strcmp(job->position_names[k], job->position_names[i]) == 0)
                    rc = ps_fail(PS_EUSER, "%s: position \"%s\" is listed twice", where, job->position_names[i]);
        return rc;
    }
    return ps_fail(PS_EUSER, "%s: \"positions\" must be \"each\", \"all\" or a list of positions and position names", where);
}

static int parse_estimates(Job *job, const cJSON *est, const char *where) {
    if (!est) return PS_OK;
    if (!cJSON_IsArray(est)) return ps_fail(PS_EUSER, "%s: \"estimates\" must be an array", where);
    const char *all[N_ESTIMATES + N_EDGE_ESTIMATES]; /* node estimators, then edge estimators */
    for (int i = 0; i < N_ESTIMATES; i++) all[i] = estimate_names[i];
    for (int i = 0; i < N_EDGE_ESTIMATES; i++) all[N_ESTIMATES + i] = edge_estimate_name((EdgeEstimate)i);
    for (const cJSON *it = est->child; it; it = it->next) {
        int i = cJSON_IsString(it) ? lookup_name(all, N_ESTIMATES + N_EDGE_ESTIMATES, it->valuestring) : -1;
        if (i < 0)
            return ps_fail(PS_EUSER, "%s: estimates: \"%s\" is not known (expected one of: %s)", where,
                           cJSON_IsString(it) ? it->valuestring : "?", name_list(all, N_ESTIMATES + N_EDGE_ESTIMATES));
        if (i < N_ESTIMATES) job->estimates[i] = 1;
        else job->edge_estimates[i - N_ESTIMATES] = 1;
    }
    return PS_OK;
}

/* "metric": a name, or a list of distinct names (every patched run is read as each; the results
 * gain a metric axis in this order). Default logit_diff. */
static int parse_metrics(Job *job, const cJSON *v, const char *where) {
    job->metrics[0] = METRIC_LOGIT_DIFF;
    job->n_metrics = 1;
    if (!v) return PS_OK;
    if (!cJSON_IsString(v) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0))
        return ps_fail(PS_EUSER, "%s: \"metric\" must be a metric name or a non-empty list of them (%s)", where,
                       name_list(metric_names, N_METRICS));
    job->n_metrics = 0;
    for (const cJSON *it = cJSON_IsString(v) ? v : v->child; it; it = cJSON_IsString(v) ? NULL : it->next) {
        int k = cJSON_IsString(it) ? lookup_name(metric_names, N_METRICS, it->valuestring) : -1;
        if (k < 0)
            return ps_fail(PS_EUSER, "%s: metric \"%s\" is not known (expected one of: %s)", where,
                           cJSON_IsString(it) ? it->valuestring : "?", name_list(metric_names, N_METRICS));
        for (int j = 0; j < job->n_metrics; j++)
            if (job->metrics[j] == (MetricKind)k) return ps_fail(PS_EUSER, "%s: metric \"%s\" is listed twice", where, metric_names[k]);
        job->metrics[job->n_metrics++] = (MetricKind)k;
    }
    return PS_OK;
}

/* Rules that need only the job itself. */
static int check_prompts(const Job *job, const char *where) {
    if (job->n_prompts == 0) return ps_fail(PS_EUSER, "%s: no prompts", where);
    int max_T = 0;
    for (int i = 0; i < job->n_prompts; i++) {
        const Prompt *p = &job->prompts[i];
        if (p->T > max_T) max_T = p->T;
        if (job->corruption == CORR_PAIR && !p->corrupt && !p->corrupt_text)
            return ps_fail(PS_EUSER, "%s: prompts[%d]: missing \"corrupt\" (pair corruption patches between clean and corrupt)", where, i);
        if (job->corruption != CORR_PAIR && (p->corrupt || p->corrupt_text))
            return ps_fail(PS_EUSER, "%s: prompts[%d]: \"corrupt\" is not used by %s corruption; remove it", where, i,
                           corruption_names[job->corruption]);
        for (int k = 0; k < job->n_metrics; k++) {
            MetricKind metric = job->metrics[k];
            if (metric != METRIC_KL && p->answer < 0)
                return ps_fail(PS_EUSER, "%s: prompts[%d]: missing \"answer\" (needed by metric %s)", where, i, metric_names[metric]);
            if (metric == METRIC_LOGIT_DIFF && p->wrong < 0)
                return ps_fail(PS_EUSER, "%s: prompts[%d]: missing \"wrong\" (needed by metric logit_diff)", where, i);
        }
        if ((job->corruption == CORR_MEAN || job->corruption == CORR_RESAMPLE) && p->T != job->prompts[0].T)
            return ps_fail(PS_EUSER, "%s: prompts[%d] has %d token%s but prompts[0] has %d; %s corruption needs prompts of one length",
                           where, i, p->T, plural_s(p->T), job->prompts[0].T, corruption_names[job->corruption]);
        if (p->noise_positions && job->corruption != CORR_GAUSSIAN)
            return ps_fail(PS_EUSER, "%s: prompts[%d]: \"noise_positions\" is used by gaussian corruption only", where, i);
        int n_noised;
        const int *noised = job_noise_positions(job, i, &n_noised);
        if (job->corruption == CORR_GAUSSIAN && !noised)
            return ps_fail(PS_EUSER, "%s: prompts[%d]: no positions to noise (give corruption.gaussian.positions, or "
                                     "\"noise_positions\" in every prompt)", where, i);
        for (int k = 0; k < n_noised; k++)
            if (noised[k] >= p->T)
                return ps_fail(PS_EUSER, "%s: prompts[%d] has %d token%s; gaussian noise position %d is past its end", where, i,
                               p->T, plural_s(p->T), noised[k]);
    }
    if (job->corruption == CORR_RESAMPLE && job->n_prompts < 2)
        return ps_fail(PS_EUSER, "%s: resample corruption needs at least two prompts", where);
    for (int k = 0; k < job->n_position_list; k++) {
        const char *name = job->position_names[k];
        int v = job->position_list[k], anywhere = 0;
        for (int i = 0; i < job->n_prompts; i++) {
            const Prompt *p = &job->prompts[i];
            int named = -1;
            for (int j = 0; name && j < p->n_named && named < 0; j++)
                if (strcmp(p->position_names[j], name) == 0) named = j;
            if (name && named < 0)
                return ps_fail(PS_EUSER, "%s: prompts[%d] has no position named \"%s\" (the job's \"positions\" lists it; "
                                         "give it in the prompt's \"positions\")", where, i, name);
            if (name && job_list_position(job, i, k) == JOB_NO_POSITION)
                return ps_fail(PS_EUSER, "%s: prompts[%d] has %d token%s; its position \"%s\" (%d) is outside it", where, i,
                               p->T, plural_s(p->T), name, p->named_positions[named]);
            anywhere |= job_list_position(job, i, k) != JOB_NO_POSITION;
        }
        if (!anywhere)
            return ps_fail(PS_EUSER, "%s: position %d is %s every prompt (longest has %d token%s)", where, v,
                           v < 0 ? "before the start of" : "past the end of", max_T, plural_s(max_T));
    }
    return PS_OK;
}

int job_list_position(const Job *job, int p, int k) {
    const Prompt *pr = &job->prompts[p];
    int v = job->position_list[k];
    for (int j = 0; job->position_names[k] && j < pr->n_named; j++)
        if (strcmp(pr->position_names[j], job->position_names[k]) == 0) v = pr->named_positions[j];
    if (v < 0) v += pr->T;
    return v >= 0 && v < pr->T ? v : JOB_NO_POSITION;
}

int job_n_columns(const Job *job) {
    if (job->positions == POS_ALL) return 1;
    if (job->positions == POS_LIST) return job->n_position_list;
    int longest = 0;
    for (int p = 0; p < job->n_prompts; p++) longest = job->prompts[p].T > longest ? job->prompts[p].T : longest;
    return longest;
}

void job_column_name(const Job *job, int j, char *out, size_t cap) {
    if (job->positions == POS_LIST && job->position_names[j]) snprintf(out, cap, "%s", job->position_names[j]);
    else if (job->positions == POS_LIST) snprintf(out, cap, "%d", job->position_list[j]);
    else if (job->positions == POS_ALL) snprintf(out, cap, "all");
    else snprintf(out, cap, "%d", j);
}

cJSON *job_prompt_json(const Prompt *p) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "clean", cJSON_CreateIntArray(p->clean, p->T));
    if (p->corrupt) cJSON_AddItemToObject(o, "corrupt", cJSON_CreateIntArray(p->corrupt, p->T));
    if (p->answer >= 0) cJSON_AddNumberToObject(o, "answer", p->answer);
    if (p->wrong >= 0) cJSON_AddNumberToObject(o, "wrong", p->wrong);
    if (p->noise_positions) cJSON_AddItemToObject(o, "noise_positions", cJSON_CreateIntArray(p->noise_positions, p->n_noise_positions));
    if (p->n_named) {
        cJSON *named = cJSON_AddObjectToObject(o, "positions");
        for (int j = 0; j < p->n_named; j++) cJSON_AddNumberToObject(named, p->position_names[j], p->named_positions[j]);
    }
    return o;
}

/* The normalised job: every default filled in, prompts inline, no file paths. */
static char *canonical_json(const Job *job) {
    cJSON *o = cJSON_CreateObject();
    cJSON *prompts = cJSON_AddArrayToObject(o, "prompts");
    for (int i = 0; i < job->n_prompts; i++) cJSON_AddItemToArray(prompts, job_prompt_json(&job->prompts[i]));
    if (job->corruption == CORR_GAUSSIAN) {
        cJSON *g = cJSON_CreateObject();
        cJSON_AddNumberToObject(g, "scale", job->noise_scale);
        if (job->noise_positions)
            cJSON_AddItemToObject(g, "positions", cJSON_CreateIntArray(job->noise_positions, job->n_noise_positions));
        cJSON_AddNumberToObject(g, "samples", job->noise_samples);
        cJSON_AddNumberToObject(g, "seed", (double)job->seed);
        if (job->noise_std == NOISE_STD_SUBJECTS) cJSON_AddStringToObject(g, "std", "subjects");
        if (job->noise_std == NOISE_STD_CORPUS) /* the corpus is part of the experiment: its tokens, not its path */
            cJSON_AddItemToObject(cJSON_AddObjectToObject(g, "std"), "corpus",
                                  cJSON_CreateIntArray(job->corpus_ids, job->n_corpus_ids));
        cJSON_AddItemToObject(cJSON_AddObjectToObject(o, "corruption"), "gaussian", g);
    } else if (job->corruption == CORR_RESAMPLE) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "seed", (double)job->seed);
        cJSON_AddItemToObject(cJSON_AddObjectToObject(o, "corruption"), "resample", r);
    } else {
        cJSON_AddStringToObject(o, "corruption", corruption_names[job->corruption]);
    }
    cJSON_AddStringToObject(o, "direction", direction_names[job->direction]);
    if (job->n_metrics == 1) { /* a plain name, so single-metric jobs keep their fingerprint */
        cJSON_AddStringToObject(o, "metric", metric_names[job->metrics[0]]);
    } else {
        cJSON *metrics = cJSON_AddArrayToObject(o, "metric");
        for (int k = 0; k < job->n_metrics; k++) cJSON_AddItemToArray(metrics, cJSON_CreateString(metric_names[job->metrics[k]]));
    }
    cJSON *nodes = cJSON_AddArrayToObject(o, "nodes");
    for (int i = 0; i < job->n_sites; i++) cJSON_AddItemToArray(nodes, cJSON_CreateString(site_name(job->sites[i])));
    if (job->positions == POS_LIST) {
        cJSON *list = cJSON_AddArrayToObject(o, "positions");
        for (int k = 0; k < job->n_position_list; k++)
            cJSON_AddItemToArray(list, job->position_names[k] ? cJSON_CreateString(job->position_names[k])
                                                              : cJSON_CreateNumber(job->position_list[k]));
    } else
        cJSON_AddStringToObject(o, "positions", job->positions == POS_ALL ? "all" : "each");
    if (job->window_center) { /* a plain number otherwise, so earlier jobs keep their fingerprint */
        cJSON *w = cJSON_AddObjectToObject(o, "window");
        cJSON_AddNumberToObject(w, "size", job->window);
        cJSON_AddStringToObject(w, "align", "center");
    } else {
        cJSON_AddNumberToObject(o, "window", job->window);
    }
    if (job->sever != N_SITES) cJSON_AddStringToObject(o, "sever", job->sever == SITE_MLP_OUT ? "mlp" : "attn");
    cJSON *est = cJSON_AddArrayToObject(o, "estimates");
    for (int e = 0; e < N_ESTIMATES; e++)
        if (job->estimates[e]) cJSON_AddItemToArray(est, cJSON_CreateString(estimate_names[e]));
    for (int e = 0; e < N_EDGE_ESTIMATES; e++)
        if (job->edge_estimates[e]) cJSON_AddItemToArray(est, cJSON_CreateString(edge_estimate_name((EdgeEstimate)e)));
    cJSON_AddBoolToObject(o, "exact", job->exact);
    /* Only edge jobs name these, so the node jobs of earlier versions keep their fingerprints. */
    edge_filter_json(&job->edges, o);
    if (job->edges.on) cJSON_AddNumberToObject(o, "ig_steps", job->ig_steps); /* so an edit may add eap_ig alone */
    return json_take_text(o);
}

/* "window": w (the node's layer and the w - 1 above it), or {"size": w, "align": "start" | "center"}
 * (centred as ROME: l - floor(w/2) .. l + ceil(w/2) - 1). Clipped to the model in job_window. */
static int parse_window(Job *job, const cJSON *w, const char *where) {
    long size = 1;
    job->window = 1;
    if (!w) return PS_OK;
    if (cJSON_IsObject(w)) {
        static const char *const keys[] = {"size", "align"};
        char inner[4200];
        snprintf(inner, sizeof inner, "%s: window", where);
        const char *align = "start";
        int rc = check_keys(w, inner, keys, 2);
        if (!rc) rc = json_get_int(w, "size", inner, 1, 1, 1 << 20, &size);
        if (!rc) rc = json_get_string(w, "align", inner, 0, &align);
        if (rc) return rc;
        if (strcmp(align, "center") != 0 && strcmp(align, "start") != 0)
            return ps_fail(PS_EUSER, "%s: \"align\" must be \"start\" or \"center\", got \"%s\"", inner, align);
        job->window_center = strcmp(align, "center") == 0;
    } else {
        cJSON *holder = cJSON_CreateObject(); /* a bare number: checked like every integer */
        cJSON_AddItemReferenceToObject(holder, "window", (cJSON *)w);
        int rc = json_get_int(holder, "window", where, 1, 1, 1 << 20, &size);
        cJSON_Delete(holder);
        if (rc) return rc;
    }
    job->window = (int)size;
    return PS_OK;
}

/* "sever": "mlp" | "attn": while a residual-stream node is patched, the MLP (attention) outputs
 * at the patched positions stay at the base run's values in every layer (ROME's severed paths). */
static int parse_sever(Job *job, const cJSON *v, const char *where) {
    job->sever = N_SITES;
    if (!v) return PS_OK;
    if (!cJSON_IsString(v) || (strcmp(v->valuestring, "mlp") != 0 && strcmp(v->valuestring, "attn") != 0))
        return ps_fail(PS_EUSER, "%s: \"sever\" must be \"mlp\" or \"attn\"", where);
    job->sever = strcmp(v->valuestring, "mlp") == 0 ? SITE_MLP_OUT : SITE_ATTN_OUT;
    for (int i = 0; i < job->n_sites; i++)
        if (job->sites[i] != SITE_RESID_PRE && job->sites[i] != SITE_RESID_MID && job->sites[i] != SITE_RESID_POST)
            return ps_fail(PS_EUSER, "%s: \"sever\" restores residual-stream nodes only (resid_pre, resid_mid, resid_post), "
                                     "not %s", where, site_name(job->sites[i]));
    for (int e = 0; e < N_ESTIMATES; e++)
        if (job->estimates[e])
            return ps_fail(PS_EUSER, "%s: \"sever\" has no gradient estimates; remove \"estimates\"", where);
    return PS_OK;
}

/* What an edge job may combine with (docs/edges.md, "Job keys"): node estimators need nodes, edge
 * estimators need edges, severed paths are a node experiment, and "ig_steps" is EAP-IG's. */
static int check_edge_keys(Job *job, const cJSON *root, const char *where) {
    int node_estimates = job->estimates[EST_ATP] || job->estimates[EST_ATP_QK] || job->estimates[EST_ATP_STAR];
    int edge_estimates = job->edge_estimates[EST_EAP] || job->edge_estimates[EST_EAP_IG] || job->edge_estimates[EST_EAP_IG_ACT];
    if (node_estimates && job->n_sites == 0)
        return ps_fail(PS_EUSER, "%s: node estimates (atp, atp_qk, atp_star) need \"nodes\"; an edge job's are eap, eap_ig, eap_ig_act", where);
    if (edge_estimates && !job->edges.on)
        return ps_fail(PS_EUSER, "%s: edge estimates (eap, eap_ig, eap_ig_act) need \"edges\"", where);
    if (job->edges.on && job->sever != N_SITES)
        return ps_fail(PS_EUSER, "%s: \"sever\" does not apply to edges (an edge patch already changes one input alone); "
                                 "remove \"sever\" or \"edges\"", where);
    if (!job->edges.on && cJSON_GetObjectItemCaseSensitive(root, "ig_steps"))
        return ps_fail(PS_EUSER, "%s: \"ig_steps\" is for the edge estimates eap_ig and eap_ig_act; the job has no \"edges\"", where);
    long steps = 5;
    int rc = json_get_int(root, "ig_steps", where, 0, 1, 1 << 16, &steps);
    job->ig_steps = (int)steps;
    return rc;
}

static int parse_root(Job *job, const cJSON *root, const char *where, const char *dir) {
    static const char *const keys[] = {"model", "prompts", "prompts_file", "corruption", "direction", "metric", "nodes",
                                       "positions", "window", "sever", "estimates", "exact", "output", "description",
                                       "add_bos", "edges", "ig_steps", "circuits"};
    if (!cJSON_IsObject(root)) return ps_fail(PS_EUSER, "%s: a job must be a JSON object", where);
    int rc = check_keys(root, where, keys, (int)(sizeof keys / sizeof keys[0]));
    const char *model = NULL, *output = NULL, *description = NULL;
    if (!rc) rc = json_get_string(root, "model", where, 1, &model);
    if (!rc) rc = json_get_string(root, "output", where, 0, &output);
    if (!rc) rc = json_get_string(root, "description", where, 0, &description);
    if (rc) return rc;
    if (path_join(job->model_dir, sizeof job->model_dir, dir, model)) return ps_fail_context(PS_EUSER, "%s: \"model\"", where);
    /* absolute, so the results file names the model wherever it is read from */
    char real[PATH_CAP];
    if (realpath(job->model_dir, real)) snprintf(job->model_dir, sizeof job->model_dir, "%s", real);
    if (output) {
        if (path_join(job->output, sizeof job->output, dir, output))
            return ps_fail_context(PS_EUSER, "%s: \"output\"", where);
    } else { /* default: the job's own name with .h5, beside it */
        snprintf(job->output, sizeof job->output, "%s", job->path);
        char *dot = strrchr(job->output, '.'), *slash = strrchr(job->output, '/');
        if (dot && (!slash || dot > slash)) *dot = 0;
        strncat(job->output, ".h5", sizeof job->output - strlen(job->output) - 1);
    }

    const cJSON *prompts = cJSON_GetObjectItemCaseSensitive(root, "prompts");
    const char *prompts_file = NULL;
    if ((rc = json_get_string(root, "prompts_file", where, 0, &prompts_file))) return rc;
    if (!!prompts == !!prompts_file)
        return ps_fail(PS_EUSER, "%s: give exactly one of \"prompts\" (a list) and \"prompts_file\" (JSONL)", where);
    if (prompts_file) {
        char path[PATH_CAP];
        rc = path_join(path, sizeof path, dir, prompts_file);
        if (rc) return ps_fail_context(rc, "%s: \"prompts_file\"", where);
        rc = parse_prompts_file(job, path);
        if (rc) return ps_fail_context(rc, "%s: \"prompts_file\"", where);
    } else if (!cJSON_IsArray(prompts)) {
        rc = ps_fail(PS_EUSER, "%s: \"prompts\" must be an array of prompt objects", where);
    } else {
        job->prompts = xcalloc((size_t)(cJSON_GetArraySize(prompts) + 1), sizeof(Prompt));
        for (const cJSON *it = prompts->child; it && !rc; it = it->next) {
            char inner[4200];
            snprintf(inner, sizeof inner, "%s: prompts[%d]", where, job->n_prompts);
            rc = parse_prompt(&job->prompts[job->n_prompts++], it, inner);
        }
    }
    if (rc) return rc;

    if ((rc = parse_corruption(job, cJSON_GetObjectItemCaseSensitive(root, "corruption"), where, dir))) return rc;
    int dir_given = cJSON_GetObjectItemCaseSensitive(root, "direction") != NULL;
    int direction = DIR_DENOISE;
    if ((rc = parse_name(root, "direction", where, direction_names, 2, &direction))) return rc;
    /* Mean, zero and resample ablate the clean run: that is noising by definition. */
    if (job->corruption == CORR_MEAN || job->corruption == CORR_ZERO || job->corruption == CORR_RESAMPLE) {
        if (dir_given && direction == DIR_DENOISE)
            return ps_fail(PS_EUSER, "%s: %s corruption patches into the clean run, so direction must be \"noise\"", where,
                           corruption_names[job->corruption]);
        direction = DIR_NOISE;
    }
    job->direction = (Direction)direction;
    if ((rc = parse_metrics(job, cJSON_GetObjectItemCaseSensitive(root, "metric"), where))) return rc;
    if ((rc = edge_filter_parse(&job->edges, cJSON_GetObjectItemCaseSensitive(root, "edges"), where))) return rc;
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(root, "nodes");
    if ((nodes || !job->edges.on) && (rc = parse_nodes(job, nodes, where))) return rc; /* an edge job may have none */
    if ((rc = parse_positions(job, cJSON_GetObjectItemCaseSensitive(root, "positions"), where))) return rc;
    if ((rc = parse_window(job, cJSON_GetObjectItemCaseSensitive(root, "window"), where))) return rc;
    if ((rc = parse_estimates(job, cJSON_GetObjectItemCaseSensitive(root, "estimates"), where))) return rc;
    if ((rc = parse_sever(job, cJSON_GetObjectItemCaseSensitive(root, "sever"), where))) return rc;
    job->exact = 1;
    if ((rc = json_get_bool(root, "exact", where, 0, &job->exact))) return rc;
    if ((rc = check_edge_keys(job, root, where))) return rc;
    int any_estimate = job->estimates[EST_ATP] || job->estimates[EST_ATP_QK] || job->estimates[EST_ATP_STAR];
    for (int e = 0; e < N_EDGE_ESTIMATES; e++) any_estimate |= job->edge_estimates[e];
    if (!job->exact && !any_estimate)
        return ps_fail(PS_EUSER, "%s: \"exact\" is false and no \"estimates\" are asked for: nothing to compute", where);
    job->add_bos = -1; /* the tokenizer's own habit */
    if (cJSON_GetObjectItemCaseSensitive(root, "add_bos") && (rc = json_get_bool(root, "add_bos", where, 0, &job->add_bos)))
        return rc;
    for (int i = 0; i < job->n_prompts; i++) {
        const Prompt *p = &job->prompts[i];
        job->had_text |= p->clean_text || p->corrupt_text || p->answer_text || p->wrong_text;
    }
    /* Text prompts have lengths once job_check has tokenized them: their rules are checked there. */
    if (!job->had_text && (rc = check_prompts(job, where))) return rc;
    job->canonical = canonical_json(job);
    return circuits_parse(job, cJSON_GetObjectItemCaseSensitive(root, "circuits"), where, dir);
}

PromptRoles job_roles(const Job *job, int p) {
    const Prompt *pr = &job->prompts[p];
    int denoise = job->direction == DIR_DENOISE;
    PromptRoles r = {pr->clean, SOURCE_PROMPT, pr->clean, p, 0};
    switch (job->corruption) {
    case CORR_PAIR:
        r.base_tokens = denoise ? pr->corrupt : pr->clean;
        r.source_tokens = denoise ? pr->clean : pr->corrupt;
        break;
    case CORR_GAUSSIAN: r.noised = denoise ? 1 : 2; break; /* both runs read the clean tokens */
    case CORR_MEAN: r.source = SOURCE_MEAN, r.source_tokens = NULL; break;
    case CORR_ZERO: r.source = SOURCE_ZERO, r.source_tokens = NULL; break;
    case CORR_RESAMPLE:
        r.source_prompt = job->resample_from[p];
        r.source_tokens = job->prompts[r.source_prompt].clean;
        break;
    }
    return r;
}

int job_model_failure(const Job *job, int rc) { return rc ? ps_fail_context(rc, "%s: \"model\"", job->path) : rc; }

void job_window(const Job *job, int layer, int n_layer, int *first, int *last) {
    int start = job->window_center ? layer - job->window / 2 : layer; /* ROME: l - w//2 .. l - w//2 + w - 1 */
    int end = start + job->window - 1;
    *first = start < 0 ? 0 : start;
    *last = end > n_layer - 1 ? n_layer - 1 : end;
}

/* Which prompt each prompt resamples from: a permutation with no fixed point, drawn from its
 * own stream of the job's seed (docs/methods.md, "Randomness"). */
int *job_derangement(int n, uint64_t seed) {
    int *perm = xmalloc(sizeof(int) * (size_t)n);
    Rng rng;
    rng_seed(&rng, seed, 0x7265, 0); /* a stream of its own, apart from the noise streams */
    for (;;) { /* Fisher-Yates, redrawn until no prompt is its own source (expected e tries) */
        for (int i = 0; i < n; i++) perm[i] = i;
        for (int i = n - 1; i > 0; i--) {
            int j = (int)(rng_uniform(&rng) * (i + 1));
            int tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        int fixed = 0;
        for (int i = 0; i < n; i++) fixed |= perm[i] == i;
        if (!fixed) return perm;
    }
}

int job_parse_text(Job *job, const char *text, const char *path) {
    memset(job, 0, sizeof *job);
    snprintf(job->path, sizeof job->path, "%s", path);
    cJSON *root;
    int rc = json_parse_text(text, strlen(text), path, &root);
    if (rc) return rc;
    char dir[4096];
    path_dirname(dir, sizeof dir, path);
    rc = parse_root(job, root, path, dir);
    cJSON_Delete(root);
    if (!rc && job->corruption == CORR_RESAMPLE) job->resample_from = job_derangement(job->n_prompts, job->seed);
    return rc;
}

int job_parse_file(Job *job, const char *path) {
    char *text;
    memset(job, 0, sizeof *job);
    int rc = read_text_file(path, &text, NULL);
    if (rc) return rc;
    rc = job_parse_text(job, text, path);
    free(text);
    return rc;
}

/* A prompt's text as token ids with the model's tokenizer, the BOS token first when add_bos
 * (and the text does not already begin with it: a "<bos>" written out is not doubled). */
static int encode_prompt_text(const Tokenizer *tok, const char *text, int add_bos, const char *where, int **ids, int *n) {
    int rc = tokenizer_encode(tok, text, 0, ids, n);
    if (rc) return ps_fail_context(rc, "%s", where);
    int bos = tokenizer_bos(tok);
    if (add_bos && bos < 0) {
        free(*ids), *ids = NULL;
        return ps_fail(PS_EUSER, "%s: \"add_bos\" is true but the model's tokenizer names no BOS token", where);
    }
    if (add_bos && (*n == 0 || (*ids)[0] != bos)) {
        *ids = xrealloc(*ids, sizeof(int) * (size_t)(*n + 1));
        memmove(*ids + 1, *ids, sizeof(int) * (size_t)*n);
        (*ids)[0] = bos, ++*n;
    }
    if (*n == 0) {
        free(*ids), *ids = NULL;
        return ps_fail(PS_EUSER, "%s: the text has no tokens", where);
    }
    return PS_OK;
}

/* "answer_text"/"wrong_text": the metric reads one token, so the text must be exactly one. */
static int encode_one_token(const Tokenizer *tok, const char *text, const char *where, int *out) {
    int *ids = NULL, n = 0, rc = tokenizer_encode(tok, text, 0, &ids, &n);
    if (rc) return ps_fail_context(rc, "%s", where);
    if (n == 1) {
        *out = ids[0];
        free(ids);
        return PS_OK;
    }
    char listed[512] = "";
    for (int i = 0; i < n && strlen(listed) < sizeof listed - 64; i++) {
        const char *shown = tokenizer_token(tok, ids[i]);
        snprintf(listed + strlen(listed), sizeof listed - strlen(listed), "%s%d \"%s\"", i ? ", " : "", ids[i],
                 shown ? shown : "?");
    }
    free(ids);
    return ps_fail(PS_EUSER, "%s: \"%s\" is %d tokens (%s); the metric reads one token: give a text of one token (GPT-2 "
                             "style tokenizers usually need the leading space, \" Paris\") or its id", where, text, n, listed);
}

static int resolve_prompt_text(Prompt *p, const Tokenizer *tok, int add_bos, const char *where) {
    char at[4300];
    int rc = PS_OK, n = 0;
    if (p->clean_text) {
        snprintf(at, sizeof at, "%s.clean_text", where);
        if ((rc = encode_prompt_text(tok, p->clean_text, add_bos, at, &p->clean, &p->T))) return rc;
    }
    if (p->corrupt_text) {
        snprintf(at, sizeof at, "%s.corrupt_text", where);
        if ((rc = encode_prompt_text(tok, p->corrupt_text, add_bos, at, &p->corrupt, &n))) return rc;
        if (n != p->T)
            return ps_fail(PS_EUSER, "%s: \"corrupt\" is %d token%s but \"clean\" is %d: they must align token for token "
                                     "(tokenize both with patchsweep tokenize to see where they part)", where, n, plural_s(n),
                           p->T);
    }
    if (p->answer_text) {
        snprintf(at, sizeof at, "%s.answer_text", where);
        if ((rc = encode_one_token(tok, p->answer_text, at, &p->answer))) return rc;
    }
    if (p->wrong_text) {
        snprintf(at, sizeof at, "%s.wrong_text", where);
        if ((rc = encode_one_token(tok, p->wrong_text, at, &p->wrong))) return rc;
    }
    free(p->clean_text), free(p->corrupt_text), free(p->answer_text), free(p->wrong_text);
    p->clean_text = p->corrupt_text = p->answer_text = p->wrong_text = NULL;
    return PS_OK;
}

/* One prompt's texts as token ids, as the job's own prompts are (a prompt of ids is left as it is). */
int job_resolve_prompt(const Job *job, Prompt *p, const Model *m, const char *where) {
    if (!p->clean_text && !p->corrupt_text && !p->answer_text && !p->wrong_text) return PS_OK;
    if (!m->tokenizer)
        return ps_fail(PS_EUSER, "%s: the prompt is text, which needs a tokenizer.json in the model folder (%s has none)", where,
                       m->dir);
    return resolve_prompt_text(p, m->tokenizer, job->add_bos >= 0 ? job->add_bos : tokenizer_adds_bos(m->tokenizer), where);
}

/* Text prompts become token ids with the model folder's tokenizer.json, then meet the rules
 * ids meet at parse time; the canonical job holds the ids. */
static int resolve_texts(Job *job, const Model *m) {
    if (!job->had_text) return PS_OK;
    if (!m->tokenizer)
        return ps_fail(PS_EUSER, "%s: the prompts are text, which needs a tokenizer.json in the model folder (%s has none); "
                                 "give token ids instead", job->path, m->dir);
    int add_bos = job->add_bos >= 0 ? job->add_bos : tokenizer_adds_bos(m->tokenizer);
    for (int i = 0; i < job->n_prompts; i++) {
        char where[4200];
        snprintf(where, sizeof where, "%s: prompts[%d]", job->path, i);
        int rc = resolve_prompt_text(&job->prompts[i], m->tokenizer, add_bos, where);
        if (rc) return rc;
    }
    int rc = check_prompts(job, job->path);
    if (rc) return rc;
    free(job->canonical);
    job->canonical = canonical_json(job);
    return PS_OK;
}

/* The gaussian noise's corpus of subjects, one per line: a JSON list of token ids, or text for
 * the model's tokenizer (no special tokens). Its tokens become part of the job. */
static int read_corpus(Job *job, const Model *m) {
    char *text;
    int rc = read_text_file(job->noise_corpus, &text, NULL), line = 0, cap = 256;
    if (rc) return rc;
    job->corpus_ids = xmalloc(sizeof(int) * (size_t)cap);
    char *cursor = text, *c;
    while (!rc && (c = next_nonblank_line(&cursor, &line))) {
        char where[PATH_CAP + 32];
        snprintf(where, sizeof where, "%s:%d", job->noise_corpus, line);
        int *ids = NULL, n = 0;
        if (*c == '[') {
            cJSON *list = cJSON_Parse(c);
            rc = list ? int_array(list, where, "subject", &ids, &n) : ps_fail(PS_EUSER, "%s: not a JSON list of token ids", where);
            cJSON_Delete(list);
        } else if (!m->tokenizer) {
            rc = ps_fail(PS_EUSER, "%s: text needs the model folder's tokenizer.json; give token ids instead", where);
        } else {
            rc = tokenizer_encode(m->tokenizer, c, 0, &ids, &n);
            if (rc) ps_fail_context(rc, "%s", where);
        }
        for (int i = 0; i < n && !rc; i++) {
            if (ids[i] >= m->cfg.vocab)
                rc = ps_fail(PS_EUSER, "%s: token %d is outside the vocabulary [0, %d)", where, ids[i], m->cfg.vocab);
            if (job->n_corpus_ids == cap) job->corpus_ids = xrealloc(job->corpus_ids, sizeof(int) * (size_t)(cap *= 2));
            job->corpus_ids[job->n_corpus_ids++] = ids[i];
        }
        free(ids);
    }
    free(text);
    if (!rc && job->n_corpus_ids < 2)
        rc = ps_fail(PS_EUSER, "%s: the corpus holds %d token%s; a standard deviation needs at least two", job->noise_corpus,
                     job->n_corpus_ids, plural_s(job->n_corpus_ids));
    return rc;
}

static void add_warning(Job *job, const char *text) {
    if (job->n_warnings < (int)(sizeof job->warnings / sizeof job->warnings[0])) job->warnings[job->n_warnings++] = xstrdup(text);
}

/* Questionable but not wrong: said by plan and run, never refused. */
static void add_warnings(Job *job, const Model *m) {
    if (job->estimates[EST_ATP_STAR] && m->cfg.n_layer <= 2)
        add_warning(job, "atp_star on a model of two layers or fewer: GradDrop gives exactly 0 to a layer-0 node whose only "
                         "path runs through layer 1, whatever its effect; such cells tie (docs/methods.md)");
    int bos = m->tokenizer ? tokenizer_bos(m->tokenizer) : -1, missing = 0, first = -1;
    if (bos < 0 || !tokenizer_adds_bos(m->tokenizer)) return; /* the model does not expect one */
    for (int i = 0; i < job->n_prompts; i++)
        if (job->prompts[i].clean[0] != bos && missing++ == 0) first = i;
    if (!missing) return;
    char text[1024];
    const char *shown = tokenizer_token(m->tokenizer, bos);
    snprintf(text, sizeof text, "%d of %d prompts (the first: prompts[%d]) do not begin with the BOS token \"%s\" (id %d) "
                                "that the model's tokenizer puts first; a model trained with it can behave very differently "
                                "without it: put it first, or \"add_bos\": true for text prompts (docs/job.md)",
             missing, job->n_prompts, first, shown ? shown : "?", bos);
    add_warning(job, text);
}

int job_check(Job *job, const Model *m) {
    const char *where = job->path;
    const ModelConfig *cfg = &m->cfg;
    int rc = resolve_texts(job, m);
    if (!rc && job->noise_std == NOISE_STD_CORPUS) {
        if ((rc = read_corpus(job, m))) return ps_fail_context(rc, "%s: corruption.gaussian.std.corpus", job->path);
        free(job->canonical); /* the corpus's tokens are part of the experiment */
        job->canonical = canonical_json(job);
    }
    if (rc) return rc;
    for (int i = 0; i < job->n_prompts; i++) {
        const Prompt *p = &job->prompts[i];
        if (p->T > cfg->n_ctx)
            return ps_fail(PS_EUSER, "%s: prompts[%d] has %d token%s, more than the model's context of %d", where, i, p->T,
                           plural_s(p->T), cfg->n_ctx);
        for (int t = 0; t < p->T; t++) {
            if (p->clean[t] >= cfg->vocab)
                return ps_fail(PS_EUSER, "%s: prompts[%d].clean[%d] is %d, outside the vocabulary [0, %d)", where, i, t,
                               p->clean[t], cfg->vocab);
            if (p->corrupt && p->corrupt[t] >= cfg->vocab)
                return ps_fail(PS_EUSER, "%s: prompts[%d].corrupt[%d] is %d, outside the vocabulary [0, %d)", where, i, t,
                               p->corrupt[t], cfg->vocab);
        }
        if (p->answer >= cfg->vocab || p->wrong >= cfg->vocab)
            return ps_fail(PS_EUSER, "%s: prompts[%d]: answer/wrong token outside the vocabulary [0, %d)", where, i,
                           cfg->vocab);
    }
    if (job->edges.on && edge_graph(cfg, &job->edges, NULL) == 0)
        return ps_fail(PS_EUSER, "%s: \"edges\" selects no edge of this model (%d layers)", where, cfg->n_layer);
    if (job->window > cfg->n_layer)
        return ps_fail(PS_EUSER, "%s: window %d is larger than the model's %d layers", where, job->window, cfg->n_layer);
    add_warnings(job, m);
    return circuits_check(job, m);
}

uint64_t job_fingerprint(const Job *job, uint64_t model_fingerprint) {
    uint64_t h = hash_bytes(HASH_INIT, job->canonical, strlen(job->canonical));
    return hash_bytes(h, &model_fingerprint, sizeof model_fingerprint);
}

void job_prompt_free(Prompt *p) {
    free(p->clean), free(p->corrupt), free(p->clean_text), free(p->corrupt_text), free(p->answer_text), free(p->wrong_text);
    free(p->noise_positions);
    for (int j = 0; j < p->n_named; j++) free(p->position_names[j]);
    free(p->position_names), free(p->named_positions);
}

void job_free(Job *job) {
    for (int i = 0; i < job->n_prompts; i++) job_prompt_free(&job->prompts[i]);
    if (job->circuits) circuits_free(job->circuits);
    free(job->circuits);
    for (int k = 0; k < job->n_position_list; k++) free(job->position_names[k]);
    free(job->position_names);
    free(job->prompts);
    free(job->noise_positions);
    free(job->position_list);
    for (int i = 0; i < job->n_warnings; i++) free(job->warnings[i]);
    free(job->canonical);
    free(job->resample_from);
    free(job->corpus_ids);
    memset(job, 0, sizeof *job);
}
