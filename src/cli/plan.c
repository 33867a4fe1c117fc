/* patchsweep plan JOB.json: counts, estimated FLOPs and memory, without running anything. */
#include <stdio.h>
#include <string.h>
#include "patchsweep/cli.h"
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"
#include "patchsweep/plan.h"

static const char *human(double x, char *buf, size_t cap) {
    const char *units[] = {"", "k", "M", "G", "T", "P", "E"};
    int i = 0;
    while (x >= 1000.0 && i < 6) x /= 1000.0, i++;
    snprintf(buf, cap, "%.3g%s", x, units[i]);
    return buf;
}

int cmd_plan(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') return report_error(ps_fail(PS_EUSER, "plan: %s", command_usage("plan")));
    Job job;
    Model m;
    memset(&m, 0, sizeof m);
    int rc = job_parse_file(&job, argv[1]);
    if (!rc) rc = job_model_failure(&job, model_load(&m, job.model_dir));
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
    printf("FLOPs      %s (a full forward per patch would be %s; %.1fx less)\n", human(st.flops, a, sizeof a),
           human(st.naive_flops, b, sizeof b), st.flops > 0 ? st.naive_flops / st.flops : 0.0);
    printf("memory     %sB per rank (weights, one prompt's runs, engine scratch of %d sequences)\n",
           human(st.bytes_per_rank, c, sizeof c), plan.batch_limit);
    printf("kernels    %s (the same bits with any: PATCHSWEEP_ISA, PATCHSWEEP_BATCH)\n", kernels()->name);
    printf("output     %s\n", job.output);
    for (int i = 0; i < job.n_warnings; i++) printf("warning    %s\n", job.warnings[i]);
    plan_free(&plan);
    job_free(&job);
    model_free(&m);
    return 0;
}
