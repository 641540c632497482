/* estimate.c - timing each scheme of a plan on a small synthetic sample
 * (estimate.h). */
#include "estimate.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
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
	uint64_t prep_growth;   /* resident bytes prepare left (BLAS/LAPACK buffers) */
	uint64_t quant_growth;  /* resident bytes a quantizing thread added */
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

/* The sample's buffers come straight from mmap and go straight back, so
 * that what stays resident afterwards is what the kernels and BLAS kept
 * (malloc would keep freed pages in its heap and blur the figure). */
struct sample_buf {
	void *p;
	size_t len;
};

static void *buf_get(struct sample_buf *b, size_t len)
{
	b->len = len ? len : 1;
	b->p = mmap(NULL, b->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b->p == MAP_FAILED)
		b->p = NULL;
	return b->p;
}

static void buf_put(struct sample_buf *b)
{
	if (b->p)
		munmap(b->p, b->len);
	b->p = NULL;
}

struct quant_run {
	const struct qs_scheme *sc;
	void *prep;
	float *w;
	const float *orig;
	uint64_t rows, cols;
	uint8_t *out;
	void *scratch;
	int rc;
	double ns_per_weight;
	uint64_t growth;
};

static void *quant_main(void *arg)
{
	struct quant_run *q = arg;
	const struct qs_scheme_ops *ops = q->sc->ops;
	size_t n = (size_t)(q->rows * q->cols);
	uint64_t r0 = qs_resident_bytes();
	/* one untimed run first: it takes the buffers' first-touch page
	 * faults, which the pipeline's recycled ring does not pay */
	int rc = q->prep ? ops->quantize_prep(q->sc, q->prep, q->w, q->rows, q->cols, q->out,
					      q->scratch)
			 : ops->quantize(q->sc, q->w, q->rows, q->cols, q->out, q->scratch);
	unsigned reps = 0;
	double t0 = cpu_now(), el = 0;
	while (rc >= 0) {
		/* schemes may work in place (gptq propagates error into
		 * w); the copy stands for the pipeline's decode to f32 */
		memcpy(q->w, q->orig, n * sizeof(float));
		rc = q->prep ? ops->quantize_prep(q->sc, q->prep, q->w, q->rows, q->cols, q->out,
						  q->scratch)
			     : ops->quantize(q->sc, q->w, q->rows, q->cols, q->out, q->scratch);
		reps++;
		el = cpu_now() - t0;
		if (el >= SAMPLE_MIN_SECONDS || reps >= 1000)
			break;
	}
	uint64_t r1 = qs_resident_bytes();
	q->rc = rc;
	q->ns_per_weight = el * 1e9 / ((double)reps * (double)n);
	/* the sample's own buffers were touched before this thread began */
	q->growth = r1 > r0 ? r1 - r0 : 0;
	return NULL;
}

static void time_scheme(const struct qs_plan_tensor *t, int level, struct sample *s)
{
	const struct qs_scheme *sc = &t->scheme;
	const struct qs_scheme_ops *ops = sc->ops;
	/* rows x cols^2 only where a Hessian will be loaded: adpq (and gptq
	 * without one) can take --hessian but is a one-pass scheme without */
	bool hessian = ops->prepare != NULL && (ops->wants & QS_WANT_HESSIAN) &&
		       (sc->stats & QS_WANT_HESSIAN);
	s->second_order = hessian && !ops->hessian_cost_linear;
	uint64_t cols = t->cols;
	/* also where the cost is linear (daq): the synthetic H is cols^2 */
	if (hessian && cols > SECOND_ORDER_COLS)
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
	/* w, orig, out, z, scratch, prep, hes, imp */
	struct sample_buf b[8] = {{0}};
	float *hes = NULL, *imp = NULL;
	float *w = buf_get(&b[0], rows * cols * sizeof(float));
	float *orig = buf_get(&b[1], rows * cols * sizeof(float));
	uint8_t *out = buf_get(&b[2], packed + 64), *z = buf_get(&b[3], zcap);
	void *scratch = buf_get(&b[4], ops->scratch_size(sc, rows, cols) + 64);
	void *prep = ops->prepare ? buf_get(&b[5], ops->prep_size(sc, cols) + 64) : NULL;
	if (!w || !orig || !out || !z || !scratch || (ops->prepare && !prep))
		goto out;
	fill(orig, rows * cols);
	memcpy(w, orig, rows * cols * sizeof(float));
	/* touched now, so the growth measured below is the libraries' */
	memset(out, 0, b[2].len);
	memset(scratch, 0, b[4].len);
	if (prep)
		memset(prep, 0, b[5].len);
	if (ops->prepare) {
		/* statistics where the run will have them (a --hessian or
		 * --importance file: plan.c sized them), since without them
		 * gptq takes its H = I shortcut and costs next to nothing */
		struct qs_tensor_stats st = {.name = t->src->name, .cols = cols};
		struct qs_diag d;
		if (t->prep_hessian) {
			hes = buf_get(&b[6], cols * cols * sizeof(float));
			if (!hes)
				goto out;
			synthetic_hessian(hes, cols);
			st.hessian = hes;
		}
		if (t->prep_importance) {
			imp = buf_get(&b[7], cols * sizeof(float));
			if (!imp)
				goto out;
			for (uint64_t i = 0; i < cols; i++)
				imp[i] = 1.0f + (float)(i % 7);
			st.importance = imp;
		}
		uint64_t r0 = qs_resident_bytes();
		double t0 = cpu_now();
		if (ops->prepare(sc, &st, prep, &d) < 0)
			goto out;
		s->prep_seconds = cpu_now() - t0;
		uint64_t r1 = qs_resident_bytes();
		s->prep_growth = r1 > r0 ? r1 - r0 : 0;
	}
	struct quant_run q = {.sc = sc, .prep = prep, .w = w, .orig = orig, .rows = rows,
			      .cols = cols, .out = out, .scratch = scratch, .rc = -1};
	/* in a thread of its own, as in a worker: what BLAS keeps per
	 * calling thread shows apart from what prepare (the reader's) kept */
	pthread_t th;
	if (pthread_create(&th, NULL, quant_main, &q) != 0)
		goto out;
	pthread_join(th, NULL);
	if (q.rc < 0)
		goto out;
	s->ns_per_weight = q.ns_per_weight;
	s->quant_growth = q.growth;
	size_t zn = ZSTD_compress(z, zcap, out, packed, level);
	if (!ZSTD_isError(zn) && packed)
		s->zstd_ratio = (double)zn / (double)packed;
out:
	for (int i = 0; i < 8; i++)
		buf_put(&b[i]);
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
	/* first-order schemes first: what stays resident after them, beyond
	 * their quantizing threads, is code and tables; every sample reports
	 * what its quantizing thread added (stack, kernel code, BLAS
	 * buffers) and the second-order ones what prepare (LAPACK) kept */
	uint64_t r0 = qs_resident_bytes(), r1 = r0, in_threads = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t k = 0; k < nsamples; k++) {
			const struct qs_scheme_ops *ops = plan->tensors[samples[k].widest].scheme.ops;
			bool so = ops->prepare != NULL && (ops->wants & QS_WANT_HESSIAN);
			if (so != (pass == 1))
				continue;
			time_scheme(&plan->tensors[samples[k].widest], level, &samples[k]);
			if (samples[k].prep_growth > est->reader_bytes)
				est->reader_bytes = samples[k].prep_growth;
			if (samples[k].quant_growth > est->worker_bytes)
				est->worker_bytes = samples[k].quant_growth;
			if (pass == 0)
				in_threads += samples[k].quant_growth;
		}
		if (pass == 0)
			r1 = qs_resident_bytes();
	}
	/* what the quantizing threads added is counted per worker */
	est->code_bytes = r1 > r0 + in_threads ? r1 - r0 - in_threads : 0;
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
				/* a Cholesky per expert with per-expert Hessians */
				double preps = t->per_expert ? (double)(t->rows / t->matrix_rows) : 1.0;
				core += preps * s->prep_seconds * scale * scale * scale;
			} else {
				/* prepare reads a cols-wide slice of H (daq's
				 * blocks): linear in cols */
				core += s->prep_seconds * scale;
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
