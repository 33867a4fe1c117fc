/* AtP (Nanda; Kramar et al. 2024): the first-order estimate of a patch's effect,
 * (a_src - a_base) . dL/da at the base run, over the node's own dimensions. */
#include "patchsweep/attrib.h"

double atp_term(const LayerView *v, Site site, int index, int pos) {
    int width = site_width(v->c, site), off, len;
    site_slice(v->c, site, index, &off, &len);
    const float *base = site_buffer(v->base, site), *grad = site_buffer(v->grad, site);
    const float *src = v->src ? site_buffer(v->src, site) : NULL;
    int lo = pos < 0 ? 0 : pos, hi = pos < 0 ? v->T - 1 : pos;
    double sum = 0.0;
    for (int t = lo; t <= hi; t++)
        for (int i = off; i < off + len; i++) {
            size_t at = (size_t)t * width + i;
            sum += ((src ? (double)src[at] : 0.0) - base[at]) * grad[at];
        }
    return sum;
}
