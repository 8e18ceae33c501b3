/* The memory wire's hooks for other modules (no lwIP types): its runtime,
 * and impairments of what each side sends (csrc/impair/). Loop thread only
 * for ns_wire_impair. */
#ifndef SPANZA_NS_WIRE_H
#define SPANZA_NS_WIRE_H

#include "runtime/rt.h"

typedef struct ns_wire ns_wire_t;
struct imp_config;
struct imp_stats;

rt_t *ns_wire_rt(const ns_wire_t *w);
/* dir IMP_OUT: what side 0 sends; IMP_IN: what side 1 sends. */
int ns_wire_impair(ns_wire_t *w, int dir, int op, const struct imp_config *cfg, struct imp_stats *out);

#endif
