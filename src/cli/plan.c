/* patchsweep plan JOB.json: counts, estimated FLOPs and memory, without running anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "patchsweep/cli.h"
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"
#include "patchsweep/ops.h"
#include "patchsweep/plan.h"

static const char *human(double x, char *buf, size_t cap) {
    const char *units[] = {"", "k", "M", "G", "T", "P", "E"};
    int i = 0;
    while (x >= 1000.0 && i < 6) x /= 1000.0, i++;
    snprintf(buf, cap, "%.3g%s", x, units[i]);
    return buf;
}

/* FLOP/s of one core's matrix product here, on a d x d weight (capped at 2048) held as the model
 * holds its matrices, and 64 rows, for about a quarter of a second: the rate plan's time
 * estimate divides by. */
static double matmul_rate(int d, WeightType type) {
    int C = d < 64 ? 64 : d > 2048 ? 2048 : d, OC = C, N = 64;
    float *w = alloc_floats((size_t)OC * C), *packed = alloc_floats(packed_floats(OC, C));
    float *in = alloc_floats((size_t)N * C), *out = alloc_floats((size_t)N * OC);
    for (size_t i = 0; i < (size_t)OC * C; i++) w[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < (size_t)N * C; i++) in[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
    pack_weights(packed, w, OC, C);
    /* 16 bits: the top half of each float32 (a bfloat16; as float16 bits it is as good for timing) */
    uint16_t *packed16 = xmalloc(sizeof(uint16_t) * packed_floats(OC, C));
    for (size_t i = 0; i < packed_floats(OC, C); i++) {
        uint32_t bits;
        memcpy(&bits, &packed[i], sizeof bits);
        packed16[i] = (uint16_t)(bits >> 16);
    }
    WeightRef held = type == WEIGHTS_F32 ? (WeightRef){packed, type, 1} : (WeightRef){packed16, type, 1};
    double start = now_seconds(), elapsed = 0.0;
    long calls = 0;
    do {
        matmul_forward_ref(out, in, held, NULL, N, C, OC);
        calls++;
    } while ((elapsed = now_seconds() - start) < 0.25);
    free(w), free(packed), free(packed16), free(in), free(out);
    return 2.0 * N * C * OC * (double)calls / elapsed;
}

static const char *duration(double seconds, char *buf, size_t cap) {
    if (seconds < 120) snprintf(buf, cap, "%.0f s", seconds);
    else if (seconds < 7200) snprintf(buf, cap, "%.0f min", seconds / 60);
    else if (seconds < 3 * 86400) snprintf(buf, cap, "%.1f h", seconds / 3600);
    else snprintf(buf, cap, "%.1f days", seconds / 86400);
    return buf;
}

/* plan JOB.json [--cores N] [--ranks-per-node R]: N ranks in all (one per core), R per node. */
static int plan_options(int argc, char **argv, const char **path, long *cores, long *per_node) {
    *path = NULL, *cores = 0, *per_node = 0;
    for (int i = 1; i < argc; i++) {
        long *value = strcmp(argv[i], "--cores") == 0 ? cores : strcmp(argv[i], "--ranks-per-node") == 0 ? per_node : NULL;
        char *end = NULL;
        if (value && i + 1 < argc) {
            *value = strtol(argv[++i], &end, 10);
            if (*end || *value < 1 || *value > 100000000)
                return ps_fail(PS_EUSER, "plan: %s must be a whole number from 1 to 10^8, not \"%s\"", argv[i - 1], argv[i]);
        } else if (argv[i][0] != '-' && !*path) {
            *path = argv[i];
        } else {
            return ps_fail(PS_EUSER, "plan: unexpected argument \"%s\"; %s", argv[i], command_usage("plan"));
        }
    }
    if (!*path) return ps_fail(PS_EUSER, "plan: %s", command_usage("plan"));
    return PS_OK;
}

int cmd_plan(int argc, char **argv) {
    const char *path;
    long cores, per_node;
    int rc = plan_options(argc, argv, &path, &cores, &per_node);
    if (rc) return report_error(rc);
    Job job;
    Model m;
    memset(&m, 0, sizeof m);
    rc = job_parse_file(&job, path);
    /* the shape alone: a plan for a model too big for this machine reads no weight */
    if (!rc) rc = job_model_failure(&job, model_load_shape(&m, job.model_dir));
    if (!rc) rc = job_check(&job, &m);
    if (rc) {
        job_free(&job);
        model_free(&m);
        return report_error(rc);
    }
    Plan plan;
    plan_build(&plan, &job, &m.cfg);
    PlanStats st;
    plan_stats(&plan, &job, &m.cfg, &st);
    int exact_units = 0;
    for (int u = 0; u < plan.n_units; u++) exact_units += plan.units[u].kind == UNIT_EXACT || plan.units[u].kind == UNIT_EDGE_EXACT;
    char a[32], b[32], c[32];
    printf("job        %s\n", job.path);
    printf("model      %s (%s, %d layers, d_model %d, %d heads / %d kv heads, d_mlp %d, vocab %d)\n", job.model_dir,
           m.cfg.model_type, m.cfg.n_layer, m.cfg.d_model, m.cfg.n_head, m.cfg.n_kv_head, m.cfg.d_mlp, m.cfg.vocab);
    if (m.cfg.assumed[0]) printf("assumed    %s (config.json leaves them out)\n", m.cfg.assumed);
    printf("prompts    %d (longest %d token%s)\n", job.n_prompts, plan.max_T, plural_s(plan.max_T));
    printf("nodes      %d (", plan.n_nodes);
    for (int s = 0; s < job.n_sites; s++) printf("%s%s", s ? ", " : "", site_name(job.sites[s]));
    printf(")\n");
    if (job.edges.on) printf("edges      %d (docs/edges.md)\n", plan.n_edges);
    printf("positions  %d (%s)\n", plan.n_positions,
           job.positions == POS_ALL ? "all at once" : job.positions == POS_EACH ? "each" : "listed");
    char metrics[64] = "";
    for (int k = 0; k < job.n_metrics; k++)
        snprintf(metrics + strlen(metrics), sizeof metrics - strlen(metrics), "%s%s", k ? ", " : "", metric_name(job.metrics[k]));
    printf("corruption %s, direction %s, metric%s %s, window %d%s, noise samples %d\n", corruption_name(job.corruption),
           direction_name(job.direction), job.n_metrics > 1 ? "s" : "", metrics, job.window,
           job.window_center ? " (centred)" : "", job_samples(&job));
    if (job.sever != N_SITES)
        printf("severed    %s held at the base run at the patched position in every layer\n", site_name(job.sever));
    printf("patches    %lld patched runs\n", st.patches);
    printf("units      %d (%d exact, %d estimate)\n", plan.n_units, exact_units, plan.n_units - exact_units);
    if (job.circuits) /* patchsweep circuit, after the run (docs/circuits.md) */
        printf("circuits   %d circuits x %d choices x %d prompts = %lld units, %.0f forward passes (patchsweep circuit)\n",
               circuits_rows(job.circuits), job.circuits->n_choices, job.n_prompts,
               (long long)circuits_rows(job.circuits) * job.circuits->n_choices * job.n_prompts, circuits_forward_passes(&job));
    printf("FLOPs      %s (a full forward per patch would be %s; %.1fx less)\n", human(st.flops, a, sizeof a),
           human(st.naive_flops, b, sizeof b), st.flops > 0 ? st.naive_flops / st.flops : 0.0);
    long ranks = per_node ? per_node : sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
    if (cores && ranks > cores) ranks = cores;
    char d[32];
    printf("memory     %sB per rank (one prompt's runs, engine scratch of %d sequences) + %sB of weights per node "
           "(matrices in %s%s, shared by its ranks): %sB for a node of %ld rank%s\n", human(st.bytes_per_rank, c, sizeof c),
           plan.batch_limit, human(st.bytes_weights, a, sizeof a), weight_type_name(m.cfg.weight_type),
           m.cfg.weight_type == WEIGHTS_F32 ? "" : " as the checkpoint stores them",
           human(st.bytes_weights + (double)ranks * st.bytes_per_rank, d, sizeof d), ranks, ranks == 1 ? "" : "s");
    if (cores) {
        double rate = matmul_rate(m.cfg.d_model, m.cfg.weight_type), busiest = 0.0;
        /* units go whole to ranks: no rank finishes before its largest unit does */
        for (int u = 0; u < plan.n_units; u++)
            if (plan.units[u].cost > busiest) busiest = plan.units[u].cost;
        double seconds = (st.flops / (double)cores > busiest ? st.flops / (double)cores : busiest) / rate;
        char e[32], f[32];
        printf("time       at least %s on %ld core%s (%sFLOP/s per core: this machine's matrix product at width %d on "
               "%s weights; attention, norms and the file add to it)\n", duration(seconds, e, sizeof e), cores,
               cores == 1 ? "" : "s", human(rate, f, sizeof f), m.cfg.d_model < 2048 ? m.cfg.d_model : 2048,
               weight_type_name(m.cfg.weight_type));
    }
    printf("kernels    %s (the same bits with any: PATCHSWEEP_ISA, PATCHSWEEP_BATCH)\n", kernels()->name);
    printf("output     %s\n", job.output);
    for (int i = 0; i < job.n_warnings; i++) printf("warning    %s\n", job.warnings[i]);
    plan_free(&plan);
    job_free(&job);
    model_free(&m);
    return 0;
}
