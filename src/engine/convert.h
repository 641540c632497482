/* convert.h - pieces of qs_convert (convert.c) that part planning
 * (parts.c) shares, so --plan-only shows exactly the plan convert runs. */
#ifndef QS_CONVERT_H
#define QS_CONVERT_H

#include "plan.h"
#include "qshard.h"

/* Checks --memory, --level and the thread count of opts and builds the plan
 * qs_convert runs over ck; *threads and *level receive the effective
 * values, and *contexts the zstd contexts the budget holds.  The plan
 * is released by the caller (qs_plan_release). */
int qs_convert_plan(const struct qs_checkpoint *ck, const struct qs_convert_opts *opts,
		    struct qs_plan *plan, unsigned *threads, int *level, unsigned *contexts,
		    struct qs_diag *diag);

#endif /* QS_CONVERT_H */
