/* Rerunning an edited job on its results file.
 *
 * A job that only gained node sites or estimators keeps what its file holds: the file is remade
 * in the new job's shape under "<output>.creating" with every finished unit carried over (values,
 * done flag, seconds, rank), then renamed over the old one, so a kill at any moment leaves either
 * the old file or the complete new one. The run then computes only what is new. Any other edit
 * is refused, naming the fields that differ, because the old numbers would not be this job's.
 *
 * Serial (rank 0 alone, before the ranks open the file in parallel), like file creation. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/store.h"

/* The job a file stores, without the paths (what its fingerprint hashed), or NULL. */
static cJSON *stored_job(hid_t file) {
    char *text = h5_string_attr(file, "job");
    cJSON *job = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (job) cJSON_DeleteItemFromObjectCaseSensitive(job, "model"), cJSON_DeleteItemFromObjectCaseSensitive(job, "output");
    return job;
}

static int array_has_string(const cJSON *array, const char *s) {
    const cJSON *it;
    cJSON_ArrayForEach(it, array) if (cJSON_IsString(it) && strcmp(it->valuestring, s) == 0) return 1;
    return 0;
}

static void append(char *out, size_t cap, const char *fmt, const char *a, const char *b) {
    size_t n = strlen(out);
    if (n + 1 < cap) snprintf(out + n, cap - n, fmt, a, b);
}

/* "+ added - removed" between two arrays of strings (sites or estimators); *removed counts the
 * names only the old one has. */
static void list_change(const cJSON *old, const cJSON *new, char *out, size_t cap, int *removed) {
    const cJSON *it;
    cJSON_ArrayForEach(it, new) if (cJSON_IsString(it) && !array_has_string(old, it->valuestring))
        append(out, cap, " +%s%s", it->valuestring, "");
    cJSON_ArrayForEach(it, old) if (cJSON_IsString(it) && !array_has_string(new, it->valuestring)) {
        append(out, cap, " -%s%s", it->valuestring, "");
        ++*removed;
    }
}

/* What differs between the stored job and this one, as "field (detail); field; ...". Returns
 * 1 when the only differences are sites or estimators added (the file can grow into this job),
 * 0 otherwise; *differs counts the fields that differ. */
static int describe_change(const cJSON *old, const cJSON *new, char *out, size_t cap, int *differs) {
    int growth_only = 1, removed = 0;
    out[0] = '\0';
    *differs = 0;
    for (int pass = 0; pass < 2; pass++) { /* the new job's fields, then the ones only the old has */
        const cJSON *field, *fields = pass == 0 ? new : old;
        cJSON_ArrayForEach(field, fields) {
            const char *key = field->string;
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(old, key), *b = cJSON_GetObjectItemCaseSensitive(new, key);
            if ((pass == 1 && b) || (a && b && cJSON_Compare(a, b, 1))) continue;
            append(out, cap, "%s%s", *differs ? "; " : "", key);
            ++*differs;
            if (a && b && (strcmp(key, "nodes") == 0 || strcmp(key, "estimates") == 0)) {
                char names[512] = "";
                list_change(a, b, names, sizeof names, &removed);
                append(out, cap, " (%s)%s", names + 1, ""); /* names starts with a space */
                continue;
            }
            growth_only = 0;
            if (a && b && strcmp(key, "prompts") == 0) {
                int na = cJSON_GetArraySize(a), nb = cJSON_GetArraySize(b), first = 0;
                while (first < na && first < nb && cJSON_Compare(cJSON_GetArrayItem(a, first), cJSON_GetArrayItem(b, first), 1))
                    first++;
                char detail[96];
                snprintf(detail, sizeof detail, " (%d prompts, was %d; the first that differs is prompts[%d])", nb, na, first);
                append(out, cap, "%s%s", detail, "");
            } else if (!a || !b) {
                append(out, cap, "%s%s", a ? " (only in the file's job)" : " (not in the file's job)", "");
            }
        }
    }
    return growth_only && !removed;
}

/* Index of every name of `names` (n rows of `width` bytes) in `old` (n_old rows), or -1: a sorted
 * copy of the old names and a binary search, since a job of neurons has 10^5 nodes. */
typedef struct { const char *name; int index; } NamedIndex;
static int by_name(const void *a, const void *b) { return strcmp(((const NamedIndex *)a)->name, ((const NamedIndex *)b)->name); }

static int *map_names(const char *names, int n, const char *old, int n_old, size_t width, size_t old_width) {
    NamedIndex *sorted = xmalloc(sizeof(NamedIndex) * (size_t)(n_old > 0 ? n_old : 1));
    for (int i = 0; i < n_old; i++) sorted[i] = (NamedIndex){old + (size_t)i * old_width, i};
    qsort(sorted, (size_t)n_old, sizeof *sorted, by_name);
    int *map = xmalloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        NamedIndex key = {names + (size_t)i * width, -1};
        const NamedIndex *hit = bsearch(&key, sorted, (size_t)n_old, sizeof *sorted, by_name);
        map[i] = hit ? hit->index : -1;
    }
    free(sorted);
    return map;
}

/* The old file's exact progress, per cell (prompt, old node): done or not, its share of its
 * unit's seconds, and the rank that computed it. */
typedef struct {
    uint8_t *done;   /* [P, N_old] */
    double *seconds; /* [P, N_old] */
    int *rank;       /* [P, N_old] */
} OldProgress;

/* A /progress dataset of one value per unit (U of them), or NULL: the old file is input too, and
 * each array is indexed by unit below. */
static void *read_per_unit(hid_t f, const char *name, hid_t type, size_t elem, hsize_t U) {
    hsize_t dims[1];
    void *values = h5_read_all(f, name, type, elem, 1, dims);
    if (values && dims[0] != U) free(values), values = NULL;
    return values;
}

static int read_old_progress(hid_t f, int P, int n_old, OldProgress *o) {
    hsize_t dims[1];
    int *kind = h5_read_all(f, "/progress/unit_kind", H5T_NATIVE_INT, sizeof(int), 1, dims);
    int U = kind && dims[0] <= INT_MAX ? (int)dims[0] : 0;
    int *prompt = read_per_unit(f, "/progress/unit_prompt", H5T_NATIVE_INT, sizeof(int), (hsize_t)U);
    int *node0 = read_per_unit(f, "/progress/unit_node0", H5T_NATIVE_INT, sizeof(int), (hsize_t)U);
    int *nodes = read_per_unit(f, "/progress/unit_nodes", H5T_NATIVE_INT, sizeof(int), (hsize_t)U);
    uint8_t *done = read_per_unit(f, "/progress/done", H5T_NATIVE_UINT8, 1, (hsize_t)U);
    double *seconds = read_per_unit(f, "/progress/seconds", H5T_NATIVE_DOUBLE, sizeof(double), (hsize_t)U);
    int *rank = read_per_unit(f, "/progress/rank", H5T_NATIVE_INT, sizeof(int), (hsize_t)U);
    o->done = xcalloc((size_t)P * (size_t)n_old, 1);
    o->seconds = xcalloc((size_t)P * (size_t)n_old, sizeof(double));
    o->rank = xcalloc((size_t)P * (size_t)n_old, sizeof(int));
    int ok = kind && prompt && node0 && nodes && done && seconds && rank;
    for (int u = 0; ok && u < U; u++) {
        ok = prompt[u] >= 0 && prompt[u] < P;
        if (ok && (kind[u] == UNIT_EDGE_EXACT || kind[u] == UNIT_EDGE_ESTIMATE)) continue; /* edges are computed again */
        ok = ok && node0[u] >= 0 && nodes[u] > 0 && node0[u] <= n_old - nodes[u];
        if (!ok || !done[u] || kind[u] != UNIT_EXACT) continue;
        for (int n = node0[u]; n < node0[u] + nodes[u]; n++) {
            size_t cell = (size_t)prompt[u] * (size_t)n_old + (size_t)n;
            o->done[cell] = 1;
            o->seconds[cell] = seconds[u] / nodes[u];
            o->rank[cell] = rank[u];
        }
    }
    free(kind), free(prompt), free(node0), free(nodes), free(done), free(seconds), free(rank);
    return ok;
}

static void free_old_progress(OldProgress *o) { free(o->done), free(o->seconds), free(o->rank); }

/* Copies prompt p's rows of one effects dataset from old to new for the new nodes keep[n] says,
 * through map (new node -> old node). Rows are [N, S, M] floats. */
static int copy_effect_rows(hid_t old_file, hid_t new_file, const char *name, int p, const int *map, const uint8_t *keep,
                            int n_old, int n_new, hsize_t S, hsize_t M) {
    hid_t from = H5Dopen2(old_file, name, H5P_DEFAULT), to = H5Dopen2(new_file, name, H5P_DEFAULT);
    size_t row = (size_t)(S * M);
    float *old_rows = xmalloc(sizeof(float) * row * (size_t)n_old), *new_rows = xmalloc(sizeof(float) * row * (size_t)n_new);
    hsize_t start[4] = {(hsize_t)p, 0, 0, 0}, old_count[4] = {1, (hsize_t)n_old, S, M}, new_count[4] = {1, (hsize_t)n_new, S, M};
    int failed = from < 0 || to < 0;
    if (!failed) {
        hid_t space = H5Dget_space(from), mem = H5Screate_simple(4, old_count, NULL);
        H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, old_count, NULL);
        failed |= H5Dread(from, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, old_rows) < 0;
        H5Sclose(mem), H5Sclose(space);
    }
    for (int n = 0; n < n_new; n++)
        for (size_t i = 0; i < row; i++) new_rows[(size_t)n * row + i] = keep[n] ? old_rows[(size_t)map[n] * row + i] : NAN;
    if (!failed) {
        hid_t space = H5Dget_space(to), mem = H5Screate_simple(4, new_count, NULL);
        H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, new_count, NULL);
        failed |= H5Dwrite(to, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, new_rows) < 0;
        H5Sclose(mem), H5Sclose(space);
    }
    free(old_rows), free(new_rows);
    if (from >= 0) H5Dclose(from);
    if (to >= 0) H5Dclose(to);
    return failed;
}

/* Copies one row (prompt p) of a [P, M] baseline dataset. */
static int copy_baseline_row(hid_t old_file, hid_t new_file, const char *name, int p, hsize_t M) {
    double values[N_METRICS];
    hsize_t start[2] = {(hsize_t)p, 0}, count[2] = {1, M};
    hid_t from = H5Dopen2(old_file, name, H5P_DEFAULT), to = H5Dopen2(new_file, name, H5P_DEFAULT);
    int failed = from < 0 || to < 0;
    for (int i = 0; i < 2 && !failed; i++) {
        hid_t d = i == 0 ? from : to, space = H5Dget_space(d), mem = H5Screate_simple(2, count, NULL);
        H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
        failed |= (i == 0 ? H5Dread(d, H5T_NATIVE_DOUBLE, mem, space, H5P_DEFAULT, values)
                          : H5Dwrite(d, H5T_NATIVE_DOUBLE, mem, space, H5P_DEFAULT, values)) < 0;
        H5Sclose(mem), H5Sclose(space);
    }
    if (from >= 0) H5Dclose(from);
    if (to >= 0) H5Dclose(to);
    return failed;
}

static int write_whole(hid_t file, const char *name, hid_t type, const void *values) {
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    int failed = d < 0 || H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values) < 0;
    if (d >= 0) H5Dclose(d);
    return failed;
}

/* Carries every finished exact unit of the old file into the new one (same prompts, positions
 * and metrics; more nodes or estimators): a new exact unit is done when every one of its nodes
 * was done in the old file. Estimate units are computed again: one covers every node and every
 * estimator of a prompt (each builds on the one before), so a new site or estimator changes it,
 * and it costs a few forward passes against the exact units' one per cell. *kept counts the
 * units carried. Returns nonzero on an HDF5 failure. */
static int carry_over(hid_t old_file, hid_t new_file, const Job *job, const Plan *plan, int *kept) {
    size_t width, old_width, n_names, old_count;
    char *names = h5_read_strings(new_file, "/nodes/name", &width, &n_names);
    char *old_names = h5_read_strings(old_file, "/nodes/name", &old_width, &old_count);
    int N = plan->n_nodes, P = job->n_prompts, U = plan->n_units;
    if (!names || !old_names || n_names != (size_t)N || old_count > INT_MAX) { /* a damaged old file */
        free(names), free(old_names);
        return 1;
    }
    int n_old = (int)old_count;
    int *map = map_names(names, N, old_names, n_old, width, old_width);
    OldProgress old;
    int failed = !read_old_progress(old_file, P, n_old, &old);

    uint8_t *done = xcalloc((size_t)U, 1), *keep = xcalloc((size_t)P * (size_t)N, 1), *prompt_kept = xcalloc((size_t)P, 1);
    double *seconds = xmalloc(sizeof(double) * (size_t)U);
    int *ranks = xmalloc(sizeof(int) * (size_t)U);
    for (int u = 0; u < U; u++) seconds[u] = NAN, ranks[u] = -1;
    *kept = 0;
    for (int u = 0; !failed && u < U; u++) {
        const Unit *unit = &plan->units[u];
        int p = unit->prompt, all = unit->kind == UNIT_EXACT;
        double total = 0.0;
        for (int n = unit->node0; n < unit->node0 + unit->n_nodes && all; n++) {
            all = map[n] >= 0 && old.done[(size_t)p * n_old + map[n]];
            if (all) total += old.seconds[(size_t)p * n_old + map[n]];
        }
        if (!all) continue;
        done[u] = 1, seconds[u] = total, ranks[u] = old.rank[(size_t)p * n_old + map[unit->node0]];
        for (int n = unit->node0; n < unit->node0 + unit->n_nodes; n++) keep[(size_t)p * N + n] = 1;
        prompt_kept[p] = 1;
        ++*kept;
    }
    hsize_t S = (hsize_t)plan->n_positions, M = (hsize_t)job->n_metrics;
    for (int p = 0; p < P && !failed; p++) {
        if (!prompt_kept[p]) continue;
        failed |= copy_effect_rows(old_file, new_file, "/effects/exact", p, map, keep + (size_t)p * N, n_old, N, S, M);
        failed |= copy_baseline_row(old_file, new_file, "/baseline/base", p, M);
        failed |= copy_baseline_row(old_file, new_file, "/baseline/source", p, M);
    }
    if (!failed)
        failed |= write_whole(new_file, "/progress/seconds", H5T_NATIVE_DOUBLE, seconds) |
                  write_whole(new_file, "/progress/rank", H5T_NATIVE_INT, ranks) |
                  write_whole(new_file, "/progress/done", H5T_NATIVE_UINT8, done); /* last, as a run writes it */
    free(names), free(old_names), free(map), free(done), free(keep), free(prompt_kept), free(seconds), free(ranks);
    free_old_progress(&old);
    return failed;
}

/* Makes "<path>.creating" in this job's shape holding the old file's finished units; *kept
 * counts them. The caller renames it over the old file once that is closed. */
static int make_extended(const char *path, const char *creating, hid_t old_file, const Job *job, const Plan *plan,
                         const Model *m, uint64_t fingerprint, int *kept) {
    int rc = store_write_structure(creating, path, job, plan, m, fingerprint);
    if (rc) return rc;
    hid_t new_file = H5Fopen(creating, H5F_ACC_RDWR, H5P_DEFAULT);
    int failed = new_file < 0 || carry_over(old_file, new_file, job, plan, kept);
    if (new_file >= 0) failed |= H5Fclose(new_file) < 0;
    if (!failed) return PS_OK;
    remove(creating);
    return ps_fail(PS_EUSER, "%s: carrying its results into the edited job's file failed (a full disk, or a damaged file?); "
                             "the file is unchanged", path);
}

int store_extend_edited(const char *path, const Job *job, const Plan *plan, const Model *m, uint64_t fingerprint) {
    hid_t f = H5I_INVALID_HID;
    /* a FIFO is never opened (HDF5 would wait for a writer) */
    H5E_BEGIN_TRY {
        f = is_regular_file(path) && H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : H5I_INVALID_HID;
    }
    H5E_END_TRY;
    if (f < 0) return PS_OK; /* store_open says what is wrong with it */
    char *format = h5_string_attr(f, "format"), *stored = h5_string_attr(f, "job_fingerprint");
    char want[32];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)fingerprint);
    int ours = format && strcmp(format, "patchsweep") == 0 && h5_int_attr(f, "format_version", 0) == RESULTS_FORMAT_VERSION;
    int same = stored && strcmp(stored, want) == 0, damaged = !stored; /* no fingerprint: store_open says so */
    free(format), free(stored);
    cJSON *old = ours && !same && !damaged ? stored_job(f) : NULL, *new = old ? cJSON_Parse(job->canonical) : NULL;
    int rc = PS_OK, extended = 0, kept = 0, had_bound = 0;
    char creating[PATH_CAP + 16];
    char change[1024];
    if (old && new) {
        int differs = 0, growth = describe_change(old, new, change, sizeof change, &differs);
        /* The fingerprint also covers the model: the old job's text with this model's fingerprint
         * gives the stored one only when the model is the same. */
        char *old_text = json_take_text(cJSON_Duplicate(old, 1)), old_want[32], *stored_again = h5_string_attr(f, "job_fingerprint");
        uint64_t old_fingerprint = hash_bytes(hash_bytes(HASH_INIT, old_text, strlen(old_text)), &m->fingerprint, sizeof m->fingerprint);
        snprintf(old_want, sizeof old_want, "%016llx", (unsigned long long)old_fingerprint);
        int same_model = stored_again && strcmp(stored_again, old_want) == 0;
        free(old_text), free(stored_again);
        const char *advice = "choose another \"output\" in the job, or delete the file to start over";
        if (growth && same_model) {
            snprintf(creating, sizeof creating, "%s.creating", path);
            had_bound = H5Lexists(f, "/bound", H5P_DEFAULT) > 0;
            rc = make_extended(path, creating, f, job, plan, m, fingerprint, &kept);
            extended = !rc;
        } else if (!differs)
            rc = ps_fail(PS_EUSER, "%s holds the results of this job with another model (its weights or config.json differ); %s",
                         path, advice);
        else if (!growth)
            rc = ps_fail(PS_EUSER, "%s holds the results of a different job: %s differ%s%s; %s", path, change,
                         differs > 1 ? "" : "s",
                         strstr(change, " -") || strstr(change, "(-") ? " (a file can gain node sites and estimators, not lose them)"
                                                                     : "", advice);
        else
            rc = ps_fail(PS_EUSER, "%s holds the results of an earlier version of this job (%s) with another model (its weights "
                                   "or config.json differ); %s", path, change, advice);
    }
    cJSON_Delete(old), cJSON_Delete(new);
    H5Fclose(f);
    if (!extended) return rc;
    if (rename(creating, path) != 0) {
        remove(creating);
        return ps_fail(PS_EUSER, "%s: cannot replace it with the edited job's file; the file is unchanged", path);
    }
    printf("%s: the job gained %s: %d of %d units carried over from the file, the rest to compute%s\n", path, change, kept,
           plan->n_units, had_bound ? "; its /bound group is dropped (rerun patchsweep bound)" : "");
    fflush(stdout);
    return PS_OK;
}
