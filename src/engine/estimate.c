/* estimate.c - timing each scheme of a plan on a small synthetic sample
 * (estimate.h). */
#include "estimate.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The rest of the pipeline per source byte (read, decode, zstd level 1,
 * xxh3, write): bench-cost measures about 0.5 core-seconds per GB for a
 * conversion that stores everything raw. */
#define PIPELINE_NS_PER_BYTE 0.5
/* Weights in one timed sample, and the least time a sample runs: enough
 * for a stable figure, little enough that --plan-only stays well under a
 * second for every scheme of a plan. */
#define SAMPLE_WEIGHTS (1u << 17)
#define SAMPLE_MIN_SECONDS 0.004
/* Second-order schemes cost rows x cols^2 (error propagation) plus cols^3
 * (the Cholesky): they are timed at this width and scaled. */
#define SECOND_ORDER_COLS 512u

struct sample {
	const char *text;
	double ns_per_weight;   /* at cols_sampled */
	double prep_seconds;    /* at cols_sampled; 0 without prepare */
	uint64_t cols_sampled;
	bool second_order;
	size_t widest;          /* the plan tensor it is timed on */
	uint64_t widest_cols;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Heavy-tailed synthetic weights (a scaled Student-t-like ratio), from a
 * fixed LCG so the sample is the same every run. */
static void fill(float *w, size_t n)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < n; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		double u = ((x >> 11) + 0.5) / 9007199254740992.0;
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		double v = ((x >> 11) + 0.5) / 9007199254740992.0;
		w[i] = (float)(0.02 * (u - 0.5) / (0.2 + v));
	}
}

static void time_scheme(const struct qs_plan_tensor *t, struct sample *s)
{
	const struct qs_scheme *sc = &t->scheme;
	const struct qs_scheme_ops *ops = sc->ops;
	/* rows x cols^2 only where a Hessian will be loaded: adpq (and gptq
	 * without one) can take --hessian but is a one-pass scheme without */
	s->second_order = ops->prepare != NULL && (ops->wants & QS_WANT_HESSIAN) &&
			  (sc->stats & QS_WANT_HESSIAN);
	uint64_t cols = t->cols;
	if (s->second_order && cols > SECOND_ORDER_COLS)
		cols = SECOND_ORDER_COLS;
	uint64_t rows = SAMPLE_WEIGHTS / cols;
	if (rows < 1)
		rows = 1;
	if (rows > t->rows)
		rows = t->rows;
	s->cols_sampled = cols;
	s->ns_per_weight = 10.0;  /* if the sample cannot run */
	float *w = malloc(rows * cols * sizeof(float));
	uint8_t *out = malloc(ops->payload_size(sc, rows, cols) + 64);
	void *scratch = malloc(ops->scratch_size(sc, rows, cols) + 64);
	void *prep = ops->prepare ? calloc(1, ops->prep_size(sc, cols) + 64) : NULL;
	if (!w || !out || !scratch || (ops->prepare && !prep))
		goto out;
	fill(w, rows * cols);
	if (ops->prepare) {
		struct qs_tensor_stats st = {.name = t->src->name, .cols = cols};
		struct qs_diag d;
		double t0 = now();
		if (ops->prepare(sc, &st, prep, &d) < 0)
			goto out;
		s->prep_seconds = now() - t0;
	}
	unsigned reps = 0;
	double t0 = now(), el = 0;
	do {
		int rc = prep ? ops->quantize_prep(sc, prep, w, rows, cols, out, scratch)
			      : ops->quantize(sc, w, rows, cols, out, scratch);
		if (rc < 0)
			goto out;
		reps++;
		el = now() - t0;
	} while (el < SAMPLE_MIN_SECONDS && reps < 1000);
	s->ns_per_weight = el * 1e9 / ((double)reps * (double)(rows * cols));
out:
	free(w);
	free(out);
	free(scratch);
	free(prep);
}

int qs_estimate_plan(const struct qs_plan *plan, unsigned threads, struct qs_estimate *est)
{
	memset(est, 0, sizeof(*est));
	double t_start = now();
	est->tensor_core_seconds = calloc(plan->ntensors + 1, sizeof(double));
	struct sample *samples = calloc(plan->ntensors + 1, sizeof(*samples));
	size_t nsamples = 0;
	if (!est->tensor_core_seconds || !samples) {
		free(samples);
		qs_estimate_release(est);
		return -ENOMEM;
	}
	/* one sample per distinct scheme, on its widest tensor */
	for (size_t i = 0; i < plan->ntensors; i++) {
		const struct qs_plan_tensor *t = &plan->tensors[i];
		if (t->raw || t->consumed || !t->nchunks)
			continue;
		size_t k = 0;
		while (k < nsamples && strcmp(samples[k].text, t->scheme.text) != 0)
			k++;
		if (k == nsamples)
			samples[nsamples++].text = t->scheme.text;
		if (t->cols > samples[k].widest_cols) {
			samples[k].widest = i;
			samples[k].widest_cols = t->cols;
		}
	}
	for (size_t k = 0; k < nsamples; k++)
		time_scheme(&plan->tensors[samples[k].widest], &samples[k]);
	for (size_t i = 0; i < plan->ntensors; i++) {
		const struct qs_plan_tensor *t = &plan->tensors[i];
		if (t->consumed)
			continue;
		double core = (double)t->src->nbytes * PIPELINE_NS_PER_BYTE * 1e-9;
		if (!t->raw && t->nchunks) {
			const struct sample *s = samples;
			while (strcmp(s->text, t->scheme.text) != 0)
				s++;
			double weights = (double)t->rows * (double)t->cols, ns = s->ns_per_weight;
			double scale = (double)t->cols / (double)s->cols_sampled;
			if (s->second_order) {
				ns *= scale;  /* each row costs cols^2 */
				core += s->prep_seconds * scale * scale * scale;
			} else {
				core += s->prep_seconds;
			}
			core += weights * ns * 1e-9;
		}
		est->tensor_core_seconds[i] = core;
		est->core_seconds += core;
	}
	est->wall_seconds = est->core_seconds / (threads ? threads : 1);
	est->sample_seconds = now() - t_start;
	free(samples);
	return 0;
}

void qs_estimate_release(struct qs_estimate *est)
{
	free(est->tensor_core_seconds);
	memset(est, 0, sizeof(*est));
}
