/* The parallel HDF5 results file.
 *
 * Why it survives a kill: all metadata (groups, datasets, attributes) is written and flushed
 * when the file is created; afterwards ranks only write raw data into datasets whose space was
 * allocated at creation, and the MPI-IO driver passes those writes straight to the file system.
 * A unit's values go out before its done flag, so a flag set on disk means its values are too.
 * The file uses the HDF5 1.8 format (superblock v2): it has no "open for writing" mark that
 * would block reopening after a crash, and attributes may exceed 64 KiB (large jobs). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include "patchsweep/core.h"
#include "patchsweep/store.h"

/* A write that failed: say whether the disk is full (the usual reason). What is on disk stays
 * valid (done flags are written last), so a rerun resumes. */
static int write_failed(const char *path, const char *what) {
    char folder[PATH_CAP];
    struct statvfs fs;
    path_dirname(folder, sizeof folder, path);
    if (statvfs(folder, &fs) == 0 && (double)fs.f_bavail * (double)fs.f_frsize < 16.0 * 1024 * 1024)
        return ps_fail(PS_EUSER, "%s: no space left on its file system (%s failed); make room and rerun: finished units are kept",
                       path, what);
    return ps_fail(PS_EUSER, "%s: %s failed (a full disk, a quota, a file size limit?); rerun to resume: finished units are kept",
                   path, what);
}

static const char *const dataset_names[] = {"/effects/atp", "/effects/atp_qk", "/effects/atp_star"};
static const char *const edge_dataset_names[N_EDGE_ESTIMATES] = {"/edges/eap", "/edges/eap_ig", "/edges/eap_ig_act"};
/* store_write_unit's values[1 + e] is node estimator e or edge estimator e, by the unit's kind. */
_Static_assert((int)N_EDGE_ESTIMATES <= (int)N_ESTIMATES, "an edge unit's estimates fit the values array");

static int write_prompts(hid_t file, const Job *job, const Plan *plan) {
    int P = job->n_prompts, T = plan->max_T;
    int *base = xmalloc(sizeof(int) * (size_t)P * T), *src = xmalloc(sizeof(int) * (size_t)P * T);
    int *len = xmalloc(sizeof(int) * (size_t)P), *ans = xmalloc(sizeof(int) * (size_t)P), *wrong = xmalloc(sizeof(int) * (size_t)P);
    for (int p = 0; p < P; p++) {
        const Prompt *pr = &job->prompts[p];
        PromptRoles roles = job_roles(job, p);
        const int *b = roles.base_tokens, *s = roles.source_tokens;
        for (int t = 0; t < T; t++) {
            base[(size_t)p * T + t] = t < pr->T ? b[t] : -1;
            src[(size_t)p * T + t] = t < pr->T && s ? s[t] : -1;
        }
        len[p] = pr->T;
        ans[p] = pr->answer;
        wrong[p] = pr->wrong;
    }
    hsize_t dims2[2] = {(hsize_t)P, (hsize_t)T}, dims1[1] = {(hsize_t)P};
    int failed = h5_write_small(file, "/prompts/base_tokens", H5T_NATIVE_INT, 2, dims2, base);
    failed |= h5_write_small(file, "/prompts/source_tokens", H5T_NATIVE_INT, 2, dims2, src);
    failed |= h5_write_small(file, "/prompts/length", H5T_NATIVE_INT, 1, dims1, len);
    failed |= h5_write_small(file, "/prompts/answer", H5T_NATIVE_INT, 1, dims1, ans);
    failed |= h5_write_small(file, "/prompts/wrong", H5T_NATIVE_INT, 1, dims1, wrong);
    if (job->resample_from)
        failed |= h5_write_small(file, "/prompts/source_prompt", H5T_NATIVE_INT, 1, dims1, job->resample_from);
    free(base), free(src), free(len), free(ans), free(wrong);
    return failed;
}

/* The position columns: /positions [S] (a position, -1 all at once, -2 per prompt),
 * /position_names [S] ("3", "-1", "all", "IO") and /prompts/position [P, S] (where each column
 * sits in each prompt: -1 all, -2 none). */
static int write_positions(hid_t file, const Job *job, const Plan *plan) {
    enum { NAME = 32 };
    int P = job->n_prompts, S = plan->n_positions;
    char *names = xcalloc((size_t)S, NAME);
    int *at = xmalloc(sizeof(int) * (size_t)P * (size_t)S);
    for (int j = 0; j < S; j++) {
        job_column_name(job, j, names + (size_t)j * NAME, NAME);
    }
    for (int p = 0; p < P; p++)
        for (int j = 0; j < S; j++) {
            int pos = plan_prompt_positions(plan, p)[j];
            at[(size_t)p * S + j] = pos == JOB_NO_POSITION ? PLAN_VARIES : pos;
        }
    hsize_t s1 = (hsize_t)S, ps[2] = {(hsize_t)P, (hsize_t)S};
    int failed = h5_write_small(file, "/positions", H5T_NATIVE_INT, 1, &s1, plan->positions);
    failed |= h5_write_strings(file, "/position_names", names, (size_t)S, NAME);
    failed |= h5_write_small(file, "/prompts/position", H5T_NATIVE_INT, 2, ps, at);
    free(names), free(at);
    return failed;
}

static int write_nodes(hid_t file, const Plan *plan) {
    int N = plan->n_nodes;
    enum { NAME = 32 };
    char *names = xcalloc((size_t)N, NAME), *sites = xcalloc((size_t)N, NAME);
    int *layer = xmalloc(sizeof(int) * (size_t)N), *head = xmalloc(sizeof(int) * (size_t)N), *neuron = xmalloc(sizeof(int) * (size_t)N);
    for (int i = 0; i < N; i++) {
        const Node *n = &plan->nodes[i];
        node_name(n, names + (size_t)i * NAME, NAME);
        snprintf(sites + (size_t)i * NAME, NAME, "%s", site_name(n->site));
        layer[i] = n->layer;
        head[i] = n->site == SITE_MLP_POST ? -1 : n->index;
        neuron[i] = n->site == SITE_MLP_POST ? n->index : -1;
    }
    hsize_t dims[1] = {(hsize_t)N};
    int failed = h5_write_strings(file, "/nodes/name", names, (size_t)N, NAME);
    failed |= h5_write_strings(file, "/nodes/site", sites, (size_t)N, NAME);
    failed |= h5_write_small(file, "/nodes/layer", H5T_NATIVE_INT, 1, dims, layer);
    failed |= h5_write_small(file, "/nodes/head", H5T_NATIVE_INT, 1, dims, head);
    failed |= h5_write_small(file, "/nodes/neuron", H5T_NATIVE_INT, 1, dims, neuron);
    free(names), free(sites), free(layer), free(head), free(neuron);
    return failed;
}

/* /edges/name ("u->v"), /edges/upstream, /edges/downstream, in contract order (docs/edges.md). */
static int write_edges(hid_t file, const Plan *plan) {
    int E = plan->n_edges;
    enum { NAME = 48 };
    char *names = xcalloc((size_t)E, NAME), *up = xcalloc((size_t)E, NAME), *down = xcalloc((size_t)E, NAME);
    for (int i = 0; i < E; i++) {
        const Edge *e = &plan->edges[i];
        edge_name(e, names + (size_t)i * NAME, NAME);
        edge_up_name(&e->up, up + (size_t)i * NAME, NAME);
        edge_down_name(&e->down, down + (size_t)i * NAME, NAME);
    }
    int failed = h5_write_strings(file, "/edges/name", names, (size_t)E, NAME);
    failed |= h5_write_strings(file, "/edges/upstream", up, (size_t)E, NAME);
    failed |= h5_write_strings(file, "/edges/downstream", down, (size_t)E, NAME);
    free(names), free(up), free(down);
    return failed;
}

static char *job_attr_json(const Job *job) {
    /* the canonical job plus where it read and wrote */
    cJSON *o = cJSON_Parse(job->canonical);
    cJSON_AddStringToObject(o, "model", job->model_dir);
    cJSON_AddStringToObject(o, "output", job->output);
    return json_take_text(o);
}

/* An upper estimate of a new results file's size in bytes: its datasets at full size, the
 * attributes (the job's JSON is the large one), and HDF5's own structures. */
static double results_file_bytes(const Job *job, const Plan *plan) {
    double P = job->n_prompts, N = plan->n_nodes, S = plan->n_positions, U = plan->n_units, T = plan->max_T;
    int arrays = job->exact, edge_arrays = job->exact;
    for (int e = 0; e < N_ESTIMATES; e++) arrays += job->estimates[e];
    for (int e = 0; e < N_EDGE_ESTIMATES; e++) edge_arrays += job->edge_estimates[e];
    double data = 4.0 * P * S * job->n_metrics * (N * arrays + (double)plan->n_edges * edge_arrays) + 144.0 * plan->n_edges + P * (4.0 * (2 * T + 4) + 16 * job->n_metrics) + U * (4 * 5 + 1 + 8 + 4 + 8 * N_ESTIMATES) +
                  N * (32 * 2 + 12) + 4 * S;
    return 1.1 * (data + 2.0 * (double)strlen(job->canonical)) + 1.0e6;
}

/* Writes the whole structure of a new results file, serially (rank 0 alone): every attribute,
 * the small datasets, and the result datasets at full size with their fill values. Built under
 * "<output>.creating" and renamed into place once it is complete and closed, so a job killed or
 * out of disk space while creating it leaves no half-made results file behind. Serial because
 * HDF5 1.10's MPI-IO driver cannot close a file after a failed write (it crashes in
 * MPI_Finalize); the ranks then open the finished file in parallel, as a resume does. */
int store_write_structure(const char *creating, const char *path, const Job *job, const Plan *plan, const Model *m,
                          uint64_t fingerprint) {
    char folder[PATH_CAP], text[64];
    path_dirname(folder, sizeof folder, path);
    make_dirs(folder); /* a failure shows in H5Fcreate below */
    /* The whole file is allocated now (its datasets at full size), so room is checked first:
     * HDF5 1.10 cannot close a file whose write failed without crashing at exit. */
    struct statvfs fs;
    double need = results_file_bytes(job, plan), have = 0;
    if (statvfs(folder, &fs) == 0 && (have = (double)fs.f_bavail * (double)fs.f_frsize) < need)
        return ps_fail(PS_EUSER, "%s: no space left: the results file needs about %.1f MB and its file system has %.1f MB free",
                       path, need / 1e6, have / 1e6);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
    hid_t f = H5Fcreate(creating, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) return ps_fail(PS_EUSER, "%s: cannot create the results file (is the folder there and writable?)", path);
    h5_set_string_attr(f, "format", "patchsweep");
    int version = RESULTS_FORMAT_VERSION, zero = 0;
    h5_set_number_attr(f, "format_version", H5T_NATIVE_INT, &version);
    char *job_json = job_attr_json(job), *cfg_json = model_config_json(&m->cfg);
    h5_set_string_attr(f, "job", job_json);
    h5_set_string_attr(f, "model_config", cfg_json);
    free(job_json), free(cfg_json);
    h5_set_string_attr(f, "direction", direction_name(job->direction));
    h5_set_string_attr(f, "metric", metric_name(job->metrics[0])); /* the first of /metrics (format 1 had one) */
    h5_set_string_attr(f, "corruption", corruption_name(job->corruption));
    h5_set_number_attr(f, "window", H5T_NATIVE_INT, &job->window);
    h5_set_string_attr(f, "window_align", job->window_center ? "center" : "start");
    h5_set_string_attr(f, "sever", job->sever == N_SITES ? "none" : job->sever == SITE_MLP_OUT ? "mlp" : "attn");
    h5_set_number_attr(f, "complete", H5T_NATIVE_INT, &zero);
    h5_set_string_attr(f, "tool_version", "patchsweep " PATCHSWEEP_VERSION);
    snprintf(text, sizeof text, "%016llx", (unsigned long long)fingerprint);
    h5_set_string_attr(f, "job_fingerprint", text);
    h5_set_string_attr(f, "model_dir", job->model_dir);
    h5_set_string_attr(f, "model_assumed", m->cfg.assumed); /* what config.json left out */
    char relative[PATH_CAP]; /* so a moved pair of folders still finds the model */
    if (path_relative(relative, sizeof relative, folder, job->model_dir) == 0)
        h5_set_string_attr(f, "model_dir_relative", relative);
    time_t now = time(NULL);
    strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    h5_set_string_attr(f, "created", text);

    int failed = write_prompts(f, job, plan) | write_nodes(f, plan);
    if (plan->n_edges) failed |= write_edges(f, plan);
    hsize_t S = (hsize_t)plan->n_positions, P = (hsize_t)job->n_prompts, U = (hsize_t)plan->n_units;
    failed |= write_positions(f, job, plan);
    hsize_t M = (hsize_t)job->n_metrics;
    char metrics[N_METRICS][16] = {{0}};
    for (int k = 0; k < job->n_metrics; k++) snprintf(metrics[k], sizeof metrics[k], "%s", metric_name(job->metrics[k]));
    failed |= h5_write_strings(f, "/metrics", metrics[0], (size_t)M, sizeof metrics[0]);
    /* What each unit covers, so a reader can tell which cells a done flag vouches for. */
    int *kind = xmalloc(sizeof(int) * U), *prompt = xmalloc(sizeof(int) * U), *node0 = xmalloc(sizeof(int) * U),
        *nodes = xmalloc(sizeof(int) * U);
    for (hsize_t u = 0; u < U; u++) {
        const Unit *unit = &plan->units[u];
        kind[u] = unit->kind, prompt[u] = unit->prompt, node0[u] = unit->node0, nodes[u] = unit->n_nodes;
    }
    failed |= h5_write_small(f, "/progress/unit_kind", H5T_NATIVE_INT, 1, &U, kind);
    failed |= h5_write_small(f, "/progress/unit_prompt", H5T_NATIVE_INT, 1, &U, prompt);
    failed |= h5_write_small(f, "/progress/unit_node0", H5T_NATIVE_INT, 1, &U, node0);
    failed |= h5_write_small(f, "/progress/unit_nodes", H5T_NATIVE_INT, 1, &U, nodes);
    free(kind), free(prompt), free(node0), free(nodes);

    float nan_float = NAN;
    double nan_double = NAN;
    uint8_t no = 0;
    int no_rank = -1;
    hsize_t dims[4] = {P, (hsize_t)plan->n_nodes, S, M}, base_dims[2] = {P, M}, est_dims[2] = {U, N_ESTIMATES};
    hsize_t edge_dims[4] = {P, (hsize_t)plan->n_edges, S, M};
    int has_nodes = plan->n_nodes > 0, edges = plan->n_edges > 0; /* an edge job may have no nodes: no /effects */
    struct { const char *name; hid_t type; int rank; const hsize_t *dims; const void *fill; int wanted; } sets[] = {
        {"/effects/exact", H5T_NATIVE_FLOAT, 4, dims, &nan_float, has_nodes && job->exact},
        {"/effects/atp", H5T_NATIVE_FLOAT, 4, dims, &nan_float, has_nodes && job->estimates[EST_ATP]},
        {"/effects/atp_qk", H5T_NATIVE_FLOAT, 4, dims, &nan_float, has_nodes && job->estimates[EST_ATP_QK]},
        {"/effects/atp_star", H5T_NATIVE_FLOAT, 4, dims, &nan_float, has_nodes && job->estimates[EST_ATP_STAR]},
        {"/edges/exact", H5T_NATIVE_FLOAT, 4, edge_dims, &nan_float, edges && job->exact},
        {"/edges/eap", H5T_NATIVE_FLOAT, 4, edge_dims, &nan_float, edges && job->edge_estimates[EST_EAP]},
        {"/edges/eap_ig", H5T_NATIVE_FLOAT, 4, edge_dims, &nan_float, edges && job->edge_estimates[EST_EAP_IG]},
        {"/edges/eap_ig_act", H5T_NATIVE_FLOAT, 4, edge_dims, &nan_float, edges && job->edge_estimates[EST_EAP_IG_ACT]},
        {"/baseline/base", H5T_NATIVE_DOUBLE, 2, base_dims, &nan_double, 1},
        {"/baseline/source", H5T_NATIVE_DOUBLE, 2, base_dims, &nan_double, 1},
        {"/progress/done", H5T_NATIVE_UINT8, 1, &U, &no, 1},
        {"/progress/seconds", H5T_NATIVE_DOUBLE, 1, &U, &nan_double, 1},
        {"/progress/rank", H5T_NATIVE_INT, 1, &U, &no_rank, 1},
        {"/progress/estimator_seconds", H5T_NATIVE_DOUBLE, 2, est_dims, &nan_double, 1},
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        if (!sets[i].wanted) continue;
        hid_t d = h5_create_dataset(f, sets[i].name, sets[i].type, sets[i].rank, sets[i].dims, sets[i].fill);
        failed |= d < 0 || H5Dclose(d) < 0;
    }
    failed |= H5Fflush(f, H5F_SCOPE_GLOBAL) < 0;
    failed |= H5Fclose(f) < 0;
    if (failed) {
        remove(creating);
        return write_failed(path, "creating the results file");
    }
    return PS_OK;
}

static int write_structure(const char *path, const Job *job, const Plan *plan, const Model *m, uint64_t fingerprint) {
    char creating[PATH_CAP + 16];
    snprintf(creating, sizeof creating, "%s.creating", path);
    int rc = store_write_structure(creating, path, job, plan, m, fingerprint);
    if (!rc && rename(creating, path) != 0)
        return ps_fail(PS_EUSER, "%s: cannot rename %s into place (%s)", path, creating, strerror(errno));
    return rc;
}

/* A reopened file is written into and read whole into buffers sized from the plan, so every
 * dataset must have exactly the plan's shape: a file whose fingerprint matches but whose datasets
 * were changed is refused before anything touches it. */
static int check_shapes(Store *s, const Job *job, const char *advice) {
    hsize_t P = (hsize_t)s->n_prompts, N = (hsize_t)s->n_nodes, S = (hsize_t)s->n_positions, U = (hsize_t)s->n_units;
    hsize_t M = (hsize_t)s->n_metrics, E = (hsize_t)s->n_edges;
    struct {
        const char *name;
        hid_t d;
        H5T_class_t cls;
        int rank;
        hsize_t dims[4];
    } want[] = {
        {"/edges/exact", s->edge_exact, H5T_FLOAT, 4, {P, E, S, M}},
        {"/edges/eap", s->edge_estimate[0], H5T_FLOAT, 4, {P, E, S, M}},
        {"/edges/eap_ig", s->edge_estimate[1], H5T_FLOAT, 4, {P, E, S, M}},
        {"/edges/eap_ig_act", s->edge_estimate[2], H5T_FLOAT, 4, {P, E, S, M}},
        {"/effects/exact", s->exact, H5T_FLOAT, 4, {P, N, S, M}},
        {"/effects/atp", s->estimate[0], H5T_FLOAT, 4, {P, N, S, M}},
        {"/effects/atp_qk", s->estimate[1], H5T_FLOAT, 4, {P, N, S, M}},
        {"/effects/atp_star", s->estimate[2], H5T_FLOAT, 4, {P, N, S, M}},
        {"/baseline/base", s->base, H5T_FLOAT, 2, {P, M}},
        {"/baseline/source", s->source, H5T_FLOAT, 2, {P, M}},
        {"/progress/done", s->done, H5T_INTEGER, 1, {U}},
        {"/progress/seconds", s->seconds, H5T_FLOAT, 1, {U}},
        {"/progress/rank", s->rank, H5T_INTEGER, 1, {U}},
        {"/progress/estimator_seconds", s->estimator_seconds, H5T_FLOAT, 2, {U, N_ESTIMATES}},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (want[i].d < 0) { /* a dataset this job does not write */
            int edge = i < 4, k = edge ? (int)i : (int)i - 4;
            int wanted = k < 4 && (edge ? E > 0 && (k == 0 ? job->exact : job->edge_estimates[k - 1])
                                        : N > 0 && (k == 0 ? job->exact : job->estimates[k - 1]));
            if (wanted) return ps_fail(PS_EUSER, "%s: %s is missing; %s", s->path, want[i].name, advice);
            continue;
        }
        hid_t type = H5Dget_type(want[i].d), space = H5Dget_space(want[i].d);
        H5T_class_t cls = H5Tget_class(type);
        int rank = H5Sget_simple_extent_ndims(space);
        hsize_t dims[8] = {0};
        int same = cls == want[i].cls && rank == want[i].rank && H5Sget_simple_extent_dims(space, dims, NULL) == rank;
        for (int k = 0; same && k < rank; k++) same = dims[k] == want[i].dims[k];
        H5Tclose(type), H5Sclose(space);
        if (!same)
            return ps_fail(PS_EUSER, "%s: %s does not have the shape this job writes (the file was changed after it was made); %s",
                           s->path, want[i].name, advice);
    }
    /* unit_kind is read whole at the end of a run */
    hid_t kinds = H5Dopen2(s->file, "/progress/unit_kind", H5P_DEFAULT);
    hsize_t n = 0;
    if (kinds >= 0) {
        hid_t space = H5Dget_space(kinds);
        n = H5Sget_simple_extent_ndims(space) == 1 ? (hsize_t)H5Sget_simple_extent_npoints(space) : 0;
        H5Sclose(space), H5Dclose(kinds);
    }
    if (n != U) return ps_fail(PS_EUSER, "%s: /progress/unit_kind does not have the shape this job writes; %s", s->path, advice);
    return PS_OK;
}

static int reopen_file(Store *s, const Job *job, uint64_t fingerprint, hid_t fapl, MPI_Comm comm, int me) {
    const char *advice = "choose another \"output\" in the job, or delete the file to start over";
    /* Look before opening for writing: HDF5 would otherwise write into an empty file. */
    int is_hdf5 = 0;
    if (me == 0) H5E_BEGIN_TRY { is_hdf5 = is_regular_file(s->path) && H5Fis_hdf5(s->path) > 0; } /* a FIFO: never opened */
        H5E_END_TRY;
    MPI_Bcast(&is_hdf5, 1, MPI_INT, 0, comm);
    if (is_hdf5) H5E_BEGIN_TRY { s->file = H5Fopen(s->path, H5F_ACC_RDWR, fapl); }
        H5E_END_TRY;
    if (!is_hdf5) return ps_fail(PS_EUSER, "%s exists and is not an HDF5 results file; %s", s->path, advice);
    if (s->file < 0) /* an HDF5 file we may not write: say why */
        return ps_fail(PS_EUSER, "%s exists but cannot be opened for writing (%s); make it writable to resume it, or %s",
                       s->path, access(s->path, W_OK) != 0 ? strerror(errno) : "in use by another program, or damaged",
                       advice);
    char *format = h5_string_attr(s->file, "format"), *stored = h5_string_attr(s->file, "job_fingerprint");
    char want[32];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)fingerprint);
    int rc = PS_OK;
    if (!format || strcmp(format, "patchsweep") != 0)
        rc = ps_fail(PS_EUSER, "%s exists and is not a patchsweep results file; %s", s->path, advice);
    else if (h5_int_attr(s->file, "format_version", 0) == 0) /* every format had it */
        rc = ps_fail(PS_EUSER, "%s: the attribute format_version is missing or not one integer (a damaged file); %s",
                     s->path, advice);
    else if (h5_int_attr(s->file, "format_version", 0) != RESULTS_FORMAT_VERSION)
        rc = ps_fail(PS_EUSER, "%s is a results file of format %d (an older patchsweep); this one writes format %d "
                               "(results with a metric axis): %s", s->path, h5_int_attr(s->file, "format_version", 0),
                     RESULTS_FORMAT_VERSION, advice);
    else if (!stored || strcmp(stored, want) != 0)
        rc = ps_fail(PS_EUSER, "%s holds the results of a different job or model (fingerprint %s, this job %s); %s",
                     s->path, stored ? stored : "none", want, advice);
    free(format);
    free(stored);
    if (rc) return rc;
    int nodes = s->n_nodes > 0, edges = s->n_edges > 0;
    s->exact = nodes && job->exact ? H5Dopen2(s->file, "/effects/exact", H5P_DEFAULT) : H5I_INVALID_HID;
    for (int e = 0; e < N_ESTIMATES; e++)
        s->estimate[e] = nodes && job->estimates[e] ? H5Dopen2(s->file, dataset_names[e], H5P_DEFAULT) : H5I_INVALID_HID;
    s->edge_exact = edges && job->exact ? H5Dopen2(s->file, "/edges/exact", H5P_DEFAULT) : H5I_INVALID_HID;
    for (int e = 0; e < N_EDGE_ESTIMATES; e++)
        s->edge_estimate[e] = edges && job->edge_estimates[e] ? H5Dopen2(s->file, edge_dataset_names[e], H5P_DEFAULT)
                                                              : H5I_INVALID_HID;
    s->base = H5Dopen2(s->file, "/baseline/base", H5P_DEFAULT);
    s->source = H5Dopen2(s->file, "/baseline/source", H5P_DEFAULT);
    s->done = H5Dopen2(s->file, "/progress/done", H5P_DEFAULT);
    s->seconds = H5Dopen2(s->file, "/progress/seconds", H5P_DEFAULT);
    s->rank = H5Dopen2(s->file, "/progress/rank", H5P_DEFAULT);
    s->estimator_seconds = H5Dopen2(s->file, "/progress/estimator_seconds", H5P_DEFAULT);
    if (s->base < 0 || s->done < 0 || s->seconds < 0 || s->rank < 0 || s->estimator_seconds < 0 ||
        (nodes && job->exact && s->exact < 0) || (edges && job->exact && s->edge_exact < 0))
        return ps_fail(PS_EUSER, "%s: the results file is missing datasets; %s", s->path, advice);
    return check_shapes(s, job, advice);
}

int store_open(Store *s, const Job *job, const Plan *plan, const Model *m, uint64_t fingerprint,
               MPI_Comm comm, int *resumed) {
    memset(s, 0, sizeof *s);
    s->file = s->exact = s->base = s->source = s->done = s->seconds = s->rank = s->estimator_seconds = H5I_INVALID_HID;
    for (int e = 0; e < N_ESTIMATES; e++) s->estimate[e] = H5I_INVALID_HID;
    s->edge_exact = H5I_INVALID_HID;
    for (int e = 0; e < N_EDGE_ESTIMATES; e++) s->edge_estimate[e] = H5I_INVALID_HID;
    snprintf(s->path, sizeof s->path, "%s", job->output);
    s->n_prompts = job->n_prompts;
    s->n_nodes = plan->n_nodes;
    s->n_edges = plan->n_edges;
    s->n_positions = plan->n_positions;
    s->n_units = plan->n_units;
    s->n_metrics = job->n_metrics;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our messages, not HDF5's error stacks */
    int me;
    MPI_Comm_rank(comm, &me);
    int exists = me == 0 ? file_exists(s->path) : 0;
    MPI_Bcast(&exists, 1, MPI_INT, 0, comm);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
    H5Pset_all_coll_metadata_ops(fapl, 1);
    H5Pset_coll_metadata_write(fapl, 1);
    *resumed = exists;
    int rc = PS_OK;
    if (!exists) { /* rank 0 writes the structure; the error line, if any, is rank 0's */
        rc = me == 0 ? write_structure(s->path, job, plan, m, fingerprint) : PS_OK;
        MPI_Bcast(&rc, 1, MPI_INT, 0, comm);
    } else { /* a file of an edited job: extended when the job only grew, else refused saying how it differs */
        rc = me == 0 ? store_extend_edited(s->path, job, plan, m, fingerprint) : PS_OK;
        MPI_Bcast(&rc, 1, MPI_INT, 0, comm);
    }
    if (!rc) rc = reopen_file(s, job, fingerprint, fapl, comm, me);
    H5Pclose(fapl);
    return rc;
}

int store_read_done(Store *s, uint8_t *done) {
    if (H5Dread(s->done, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, done) < 0)
        return ps_fail(PS_EUSER, "%s: cannot read /progress/done", s->path);
    return PS_OK;
}

/* Writes count elements at start of a dataset of the given rank from buf. */
static herr_t write_block(hid_t d, hid_t type, int rank, const hsize_t *start, const hsize_t *count, const void *buf) {
    hid_t file_space = H5Dget_space(d);
    H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t mem_space = H5Screate_simple(rank, count, NULL);
    herr_t rc = H5Dwrite(d, type, mem_space, file_space, H5P_DEFAULT, buf);
    H5Sclose(mem_space);
    H5Sclose(file_space);
    return rc;
}

int store_write_unit(Store *s, const Plan *plan, int unit, const float *values[1 + N_ESTIMATES], const double *base_metric,
                     const double *source_metric, double seconds, const double estimator_seconds[N_ESTIMATES], int rank) {
    const Unit *u = &plan->units[unit];
    hsize_t M = (hsize_t)s->n_metrics;
    hsize_t start[4] = {(hsize_t)u->prompt, (hsize_t)u->node0, 0, 0};
    hsize_t count[4] = {1, (hsize_t)u->n_nodes, (hsize_t)plan->n_positions, M};
    herr_t rc = 0;
    hid_t targets[1 + N_ESTIMATES] = {s->exact, s->estimate[0], s->estimate[1], s->estimate[2]};
    if (u->kind == UNIT_EDGE_EXACT || u->kind == UNIT_EDGE_ESTIMATE) {
        targets[0] = s->edge_exact;
        for (int e = 0; e < N_ESTIMATES; e++) targets[1 + e] = e < N_EDGE_ESTIMATES ? s->edge_estimate[e] : H5I_INVALID_HID;
    }
    for (int i = 0; i < 1 + N_ESTIMATES; i++)
        if (values[i] && targets[i] >= 0) rc |= write_block(targets[i], H5T_NATIVE_FLOAT, 4, start, count, values[i]);
    hsize_t one = 1, at = (hsize_t)unit, row[2] = {(hsize_t)u->prompt, 0}, metrics[2] = {1, M};
    rc |= write_block(s->base, H5T_NATIVE_DOUBLE, 2, row, metrics, base_metric);
    rc |= write_block(s->source, H5T_NATIVE_DOUBLE, 2, row, metrics, source_metric);
    rc |= write_block(s->seconds, H5T_NATIVE_DOUBLE, 1, &at, &one, &seconds);
    rc |= write_block(s->rank, H5T_NATIVE_INT, 1, &at, &one, &rank);
    if (estimator_seconds) {
        hsize_t start2[2] = {at, 0}, count2[2] = {1, N_ESTIMATES};
        rc |= write_block(s->estimator_seconds, H5T_NATIVE_DOUBLE, 2, start2, count2, estimator_seconds);
    }
    if (rc < 0) return write_failed(s->path, "writing a unit's results");
    uint8_t yes = 1; /* the flag goes last: set means the values above are on disk */
    if (write_block(s->done, H5T_NATIVE_UINT8, 1, &at, &one, &yes) < 0) return write_failed(s->path, "writing a done flag");
    return PS_OK;
}

/* Sums of /progress/seconds over exact units and of each /progress/estimator_seconds column. */
static void unit_totals(Store *s, double totals[1 + N_ESTIMATES]) {
    int U = s->n_units;
    double *sec = alloc_doubles((size_t)U), *est = alloc_doubles((size_t)U * N_ESTIMATES);
    uint8_t *done = xcalloc((size_t)U + 1, 1);
    int *kind = xcalloc((size_t)U + 1, sizeof(int));
    hid_t kinds = H5Dopen2(s->file, "/progress/unit_kind", H5P_DEFAULT);
    H5Dread(s->seconds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, sec);
    H5Dread(s->estimator_seconds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, est);
    H5Dread(s->done, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, done);
    H5Dread(kinds, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, kind);
    H5Dclose(kinds);
    memset(totals, 0, sizeof(double) * (1 + N_ESTIMATES));
    for (int u = 0; u < U; u++) {
        if (!done[u]) continue;
        if (kind[u] == UNIT_EXACT) totals[0] += sec[u];
        else
            for (int e = 0; e < N_ESTIMATES; e++)
                if (!isnan(est[(size_t)u * N_ESTIMATES + e])) totals[1 + e] += est[(size_t)u * N_ESTIMATES + e];
    }
    free(sec), free(est), free(done), free(kind);
}

int store_finish(Store *s, int complete, int n_ranks, double seconds_runs) {
    static const char *const names[1 + N_ESTIMATES] = {"seconds_exact", "seconds_atp", "seconds_atp_qk",
                                                       "seconds_atp_star"};
    double totals[1 + N_ESTIMATES];
    unit_totals(s, totals);
    h5_set_number_attr(s->file, "complete", H5T_NATIVE_INT, &complete);
    h5_set_number_attr(s->file, "n_ranks", H5T_NATIVE_INT, &n_ranks);
    h5_set_number_attr(s->file, "seconds_runs", H5T_NATIVE_DOUBLE, &seconds_runs);
    for (int i = 0; i < 1 + N_ESTIMATES; i++) h5_set_number_attr(s->file, names[i], H5T_NATIVE_DOUBLE, &totals[i]);
    if (H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0) return write_failed(s->path, "finishing the file");
    return PS_OK;
}

void store_close(Store *s) {
    hid_t ids[] = {s->exact, s->estimate[0], s->estimate[1], s->estimate[2], s->edge_exact, s->edge_estimate[0],
                   s->edge_estimate[1], s->edge_estimate[2], s->base, s->source, s->done, s->seconds, s->rank,
                   s->estimator_seconds};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (ids[i] >= 0) H5Dclose(ids[i]);
    if (s->file >= 0) H5Fclose(s->file);
    s->file = H5I_INVALID_HID;
}
