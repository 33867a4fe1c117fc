/* The node catalogue: every (site, layer, head/neuron) a job patches, in the order of the
 * results file: sites as the job lists them, then layers, then heads or neurons. */
#include <stdio.h>
#include "patchsweep/patch.h"
#include "patchsweep/plan.h"

void node_name(const Node *n, char *out, size_t cap) {
    switch (n->site) {
    case SITE_Q:
    case SITE_Z: snprintf(out, cap, "L%d.H%d.%s", n->layer, n->index, site_name(n->site)); break;
    case SITE_K:
    case SITE_V: snprintf(out, cap, "L%d.KV%d.%s", n->layer, n->index, site_name(n->site)); break;
    case SITE_MLP_POST: snprintf(out, cap, "L%d.N%d", n->layer, n->index); break;
    default: snprintf(out, cap, "L%d.%s", n->layer, site_name(n->site)); break;
    }
}
