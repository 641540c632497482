/* estimate.c - timing each scheme of a plan on a small synthetic sample
 * (estimate.h). */
#include "estimate.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

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
	double zstd_ratio;      /* compressed / packed bytes of the sample */
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

/* The kernels are timed in this thread's CPU time: the estimate is in
 * core-seconds, and on a shared machine wall time would count the other
 * processes' turns on the core. */
static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
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

uint64_t qs_resident_bytes(void)
{
	unsigned long long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "re");
	if (!f)
		return 0;
	int n = fscanf(f, "%llu %llu", &size, &resident);
	fclose(f);
	long page = sysconf(_SC_PAGESIZE);
	return n == 2 && page > 0 ? (uint64_t)resident * (uint64_t)page : 0;
}

/* A symmetric, strictly diagonally dominant (so positive definite) matrix
 * with every entry non-zero: the Cholesky and the error propagation do
 * all their work, as on a real X^T X. */
static void synthetic_hessian(float *h, uint64_t cols)
{
	for (uint64_t i = 0; i < cols; i++)
		for (uint64_t j = 0; j <= i; j++) {
			uint64_t x = (i * 2654435761u) ^ (j * 40503u);
			float v = i == j ? (float)cols + 1.0f + (float)(i % 5)
					 : (float)((x % 1000) / 1000.0 - 0.5) * 0.9f;
			h[i * cols + j] = h[j * cols + i] = v;
		}
}

static void time_scheme(const struct qs_plan_tensor *t, int level, struct sample *s)
{
	const struct qs_scheme *sc = &t->scheme;
	const struct qs_scheme_ops *ops = sc->ops;
	s->second_order = ops->prepare != NULL && (ops->wants & QS_WANT_HESSIAN);
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
	s->zstd_ratio = 1.0;
	uint64_t packed = ops->payload_size(sc, rows, cols);
	size_t zcap = ZSTD_compressBound(packed);
	float *hes = NULL, *imp = NULL;
	float *w = malloc(rows * cols * sizeof(float));
	float *orig = malloc(rows * cols * sizeof(float));
	uint8_t *out = malloc(packed + 64), *z = malloc(zcap);
	void *scratch = malloc(ops->scratch_size(sc, rows, cols) + 64);
	void *prep = ops->prepare ? calloc(1, ops->prep_size(sc, cols) + 64) : NULL;
	if (!w || !orig || !out || !z || !scratch || (ops->prepare && !prep))
		goto out;
	fill(orig, rows * cols);
	memcpy(w, orig, rows * cols * sizeof(float));
	if (ops->prepare) {
		/* statistics where the run will have them (a --hessian or
		 * --importance file: plan.c sized them), since without them
		 * gptq takes its H = I shortcut and costs next to nothing */
		struct qs_tensor_stats st = {.name = t->src->name, .cols = cols};
		struct qs_diag d;
		if (t->prep_hessian) {
			hes = malloc(cols * cols * sizeof(float));
			if (!hes)
				goto out;
			synthetic_hessian(hes, cols);
			st.hessian = hes;
		}
		if (t->prep_importance) {
			imp = malloc(cols * sizeof(float));
			if (!imp)
				goto out;
			for (uint64_t i = 0; i < cols; i++)
				imp[i] = 1.0f + (float)(i % 7);
			st.importance = imp;
		}
		double t0 = cpu_now();
		if (ops->prepare(sc, &st, prep, &d) < 0)
			goto out;
		s->prep_seconds = cpu_now() - t0;
	}
	/* one untimed run first: it takes the buffers' first-touch page
	 * faults, which the pipeline's recycled ring does not pay */
	int rc = prep ? ops->quantize_prep(sc, prep, w, rows, cols, out, scratch)
		      : ops->quantize(sc, w, rows, cols, out, scratch);
	if (rc < 0)
		goto out;
	unsigned reps = 0;
	double t0 = cpu_now(), el = 0;
	do {
		/* schemes may work in place (gptq propagates error into
		 * w); the copy stands for the pipeline's decode to f32 */
		memcpy(w, orig, rows * cols * sizeof(float));
		rc = prep ? ops->quantize_prep(sc, prep, w, rows, cols, out, scratch)
			  : ops->quantize(sc, w, rows, cols, out, scratch);
		if (rc < 0)
			goto out;
		reps++;
		el = cpu_now() - t0;
	} while (el < SAMPLE_MIN_SECONDS && reps < 1000);
	s->ns_per_weight = el * 1e9 / ((double)reps * (double)(rows * cols));
	size_t zn = ZSTD_compress(z, zcap, out, packed, level);
	if (!ZSTD_isError(zn) && packed)
		s->zstd_ratio = (double)zn / (double)packed;
out:
	free(z);
	free(w);
	free(orig);
	free(hes);
	free(imp);
	free(out);
	free(scratch);
	free(prep);
}

int qs_estimate_plan(const struct qs_plan *plan, unsigned threads, int level,
		     struct qs_estimate *est)
{
	memset(est, 0, sizeof(*est));
	double t_start = now();
	est->tensor_core_seconds = calloc(plan->ntensors + 1, sizeof(double));
	est->tensor_zstd_ratio = calloc(plan->ntensors + 1, sizeof(double));
	struct sample *samples = calloc(plan->ntensors + 1, sizeof(*samples));
	size_t nsamples = 0;
	if (!est->tensor_core_seconds || !est->tensor_zstd_ratio || !samples) {
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
	/* first-order schemes first: what stays resident after them is code
	 * and tables; what the second-order ones add on top is BLAS's */
	uint64_t r0 = qs_resident_bytes(), r1 = r0;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t k = 0; k < nsamples; k++) {
			const struct qs_scheme_ops *ops = plan->tensors[samples[k].widest].scheme.ops;
			bool so = ops->prepare != NULL && (ops->wants & QS_WANT_HESSIAN);
			if (so == (pass == 1))
				time_scheme(&plan->tensors[samples[k].widest], level, &samples[k]);
		}
		if (pass == 0)
			r1 = qs_resident_bytes();
	}
	uint64_t r2 = qs_resident_bytes();
	est->code_bytes = r1 > r0 ? r1 - r0 : 0;
	est->blas_bytes_per_thread = r2 > r1 ? r2 - r1 : 0;
	for (size_t i = 0; i < plan->ntensors; i++) {
		const struct qs_plan_tensor *t = &plan->tensors[i];
		if (t->consumed)
			continue;
		double core = (double)t->src->nbytes * PIPELINE_NS_PER_BYTE * 1e-9;
		est->tensor_zstd_ratio[i] = 1.0;
		if (!t->raw && t->nchunks) {
			const struct sample *s = samples;
			while (strcmp(s->text, t->scheme.text) != 0)
				s++;
			est->tensor_zstd_ratio[i] = s->zstd_ratio;
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
	free(est->tensor_zstd_ratio);
	memset(est, 0, sizeof(*est));
}
