/* bench-gptq.c - the second-order schemes on synthetic layers:
 *   1. output SQNR 10 log10(sum w H w^T / sum e H e^T) of rtn, adpq, gptq
 *      and athena at 3 bits, with their bits per weight, on layers whose
 *      calibration activations have hot channels;
 *   2. speed of gptq's quantization (dominated by the lazy block updates)
 *      against this machine's plain square cblas_sgemm;
 *   3. memory: prep_size and chunk scratch for Llama-70B up_proj and
 *      down_proj against a 1 GiB window.
 * Usage: bench-gptq [quick | speed]   (quick: smaller layers, for tests;
 *        speed: part 2 alone). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"
#include "qshard.h"
#include "scheme.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static float gauss(void)
{
	double u = ((double)(rnd() >> 11) + 1.0) * 0x1p-53, v = (double)(rnd() >> 11) * 0x1p-53;
	return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "bench-gptq: out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

/* H = X^T X / tok for X[tok, cols]: per-token a shared factor (correlated
 * channels), 1 in 64 channels 25x hotter, heavy-ish tails. */
static float *make_h(size_t cols, size_t tok)
{
	float *x = xmalloc(tok * cols * sizeof(float));
	float *h = xmalloc(cols * cols * sizeof(float));
	for (size_t t = 0; t < tok; t++) {
		float common = gauss();
		for (size_t j = 0; j < cols; j++) {
			float s = j % 64 == 3 ? 25.0f : 1.0f + 0.5f * (float)(j % 5);
			x[t * cols + j] = s * (gauss() + 0.7f * common);
		}
	}
	cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)cols, (int)tok,
		    1.0f / (float)tok, x, (int)cols, 0.0f, h, (int)cols);
	for (size_t i = 0; i < cols; i++)
		for (size_t j = 0; j < i; j++)
			h[i * cols + j] = h[j * cols + i];
	free(x);
	return h;
}

/* sum_r e_r H e_r^T */
static double quad(const float *e, const float *h, size_t rows, size_t cols)
{
	float *eh = xmalloc(rows * cols * sizeof(float));
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)cols,
		    1.0f, e, (int)cols, h, (int)cols, 0.0f, eh, (int)cols);
	double s = 0;
	for (size_t i = 0; i < rows * cols; i++)
		s += (double)eh[i] * e[i];
	free(eh);
	return s;
}

struct result {
	double sqnr, bpw, seconds;
};

static struct result run(const char *spec, const float *w, const float *h, size_t rows,
			 size_t cols, double signal)
{
	struct qs_scheme s;
	struct qs_diag d = { 0 };
	struct result res = { 0, 0, 0 };
	if (qs_scheme_parse(spec, &s, &d)) {
		fprintf(stderr, "bench-gptq: %s\n", d.msg);
		exit(1);
	}
	size_t ps = (size_t)s.ops->payload_size(&s, rows, cols);
	uint8_t *out = xmalloc(ps);
	void *scratch = xmalloc((size_t)s.ops->scratch_size(&s, rows, cols));
	float *deq = xmalloc(rows * cols * sizeof(float));
	double t0 = now();
	int rc;
	if (s.ops->prepare) {
		void *prep = xmalloc((size_t)s.ops->prep_size(&s, cols));
		struct qs_tensor_stats st = { .name = "bench", .cols = cols, .hessian = h };
		rc = s.ops->prepare(&s, &st, prep, &d);
		if (!rc)
			rc = s.ops->quantize_prep(&s, prep, w, rows, cols, out, scratch);
		free(prep);
	} else {
		rc = s.ops->quantize(&s, w, rows, cols, out, scratch);
	}
	res.seconds = now() - t0;
	if (!rc)
		rc = s.ops->dequantize(&s, out, rows, cols, deq, scratch);
	if (rc) {
		fprintf(stderr, "bench-gptq: %s: %s\n", spec, d.msg[0] ? d.msg : qs_strerror(rc));
		exit(1);
	}
	for (size_t i = 0; i < rows * cols; i++)
		deq[i] = w[i] - deq[i];
	res.sqnr = 10.0 * log10(signal / quad(deq, h, rows, cols));
	res.bpw = 8.0 * (double)ps / (double)(rows * cols);
	free(out);
	free(scratch);
	free(deq);
	return res;
}

static void quality(size_t rows, size_t cols, size_t tok)
{
	float *h = make_h(cols, tok);
	float *w = xmalloc(rows * cols * sizeof(float));
	for (size_t i = 0; i < rows * cols; i++) {
		float g = gauss();
		w[i] = 0.02f * g * (rnd() % 100 == 0 ? 4.0f : 1.0f);
	}
	double signal = quad(w, h, rows, cols);
	static const char *specs[] = {
		"rtn:bits=3,group=128",
		"rtn:bits=3,group=64",
		"adpq:bits=3",
		"gptq:bits=3,group=128",
		"gptq:bits=3,group=128,actorder=1",
		"gptq:bits=3,group=64",
		"gptq:bits=3,group=128,alpha=0.005",
		"athena:bits=3,group=128",
		"athena:bits=3,group=64",
	};
	printf("quality: layer %zu x %zu, %zu calibration tokens, 1/64 channels 25x hot\n",
	       rows, cols, tok);
	printf("  %-36s %6s %9s %8s\n", "scheme", "bpw", "SQNR dB", "seconds");
	double sq[9];
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		struct result r = run(specs[i], w, h, rows, cols, signal);
		sq[i] = r.sqnr;
		printf("  %-36s %6.3f %9.2f %8.3f\n", specs[i], r.bpw, r.sqnr, r.seconds);
	}
	printf("  gptq 3-bit g128 - rtn 3-bit g128 = %+.2f dB (target >= +3)\n", sq[3] - sq[0]);
	printf("  gptq 3-bit g128 - adpq 3-bit     = %+.2f dB (target >= 0)\n", sq[3] - sq[2]);
	printf("  athena 3-bit g128 - gptq g128    = %+.2f dB\n", sq[7] - sq[3]);
	free(h);
	free(w);
}

static void speed(size_t rows, size_t cols)
{
	/* plain square sgemm of the same order */
	size_t n = cols;
	float *a = xmalloc(n * n * sizeof(float)), *b = xmalloc(n * n * sizeof(float));
	float *c = xmalloc(n * n * sizeof(float));
	for (size_t i = 0; i < n * n; i++)
		a[i] = gauss(), b[i] = gauss(), c[i] = 0;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 256, 256, 256, 1.0f, a, (int)n,
		    b, (int)n, 0.0f, c, (int)n);
	/* best of 3 for both sides: shared machines are noisy */
	double t0, ts = INFINITY;
	for (int rep = 0; rep < 3; rep++) {
		t0 = now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n,
			    1.0f, a, (int)n, b, (int)n, 0.0f, c, (int)n);
		ts = fmin(ts, now() - t0);
	}
	double gf_plain = 2.0 * (double)n * n * n / ts / 1e9;
	free(a);
	free(b);
	free(c);

	float *h = make_h(cols, cols * 2);
	float *w = xmalloc(rows * cols * sizeof(float));
	for (size_t i = 0; i < rows * cols; i++)
		w[i] = 0.02f * gauss();
	struct qs_scheme s;
	qs_scheme_parse("gptq:bits=3,group=128", &s, NULL);
	void *prep = xmalloc((size_t)s.ops->prep_size(&s, cols));
	void *scratch = xmalloc((size_t)s.ops->scratch_size(&s, rows, cols));
	uint8_t *out = xmalloc((size_t)s.ops->payload_size(&s, rows, cols));
	struct qs_tensor_stats st = { .name = "bench", .cols = cols, .hessian = h };
	t0 = now();
	if (s.ops->prepare(&s, &st, prep, NULL)) {
		fprintf(stderr, "bench-gptq: prepare failed\n");
		exit(1);
	}
	double tp = now() - t0;
	double tq = INFINITY;
	for (int rep = 0; rep < 3; rep++) {
		t0 = now();
		s.ops->quantize_prep(&s, prep, w, rows, cols, out, scratch);
		tq = fmin(tq, now() - t0);
	}
	/* Every column j pushes its error onto every later column k once
	 * per row (one multiply-add, whatever the blocking: in-leaf axpys or
	 * sgemms), so 2 * rows * cols*(cols-1)/2 flops.  The time is the whole
	 * quantize (grids, codes, packing too), so the rate is a lower bound
	 * on the updates' own. */
	double flops = (double)rows * cols * ((double)cols - 1.0);
	double gf = flops / tq / 1e9;
	printf("speed (best of 3): plain cblas_sgemm %zu^3: %.1f GFLOP/s (%d threads)\n", n, gf_plain,
	       openblas_get_num_threads());
	printf("  gptq prepare (LAPACK, cols %zu): %.3f s\n", cols, tp);
	printf("  gptq quantize %zu x %zu: %.3f s, block updates %.1f GFLOP/s = %.0f%% of plain "
	       "sgemm (target >= 50%%)\n",
	       rows, cols, tq, gf, 100.0 * gf / gf_plain);
	free(h);
	free(w);
	free(prep);
	free(scratch);
	free(out);
}

static void memory(void)
{
	const uint64_t budget = 1ull << 30;
	struct qs_scheme s;
	qs_scheme_parse("gptq:bits=3,group=128", &s, NULL);
	struct {
		const char *name;
		uint64_t rows, cols;
	} t[] = { { "70B up_proj", 28672, 8192 }, { "70B down_proj", 8192, 28672 } };
	printf("memory (window 1 GiB = %llu bytes):\n", (unsigned long long)budget);
	for (int i = 0; i < 2; i++) {
		uint64_t prep = s.ops->prep_size(&s, t[i].cols);
		printf("  %s %llu x %llu: prep_size %llu bytes (%.1f MiB)", t[i].name,
		       (unsigned long long)t[i].rows, (unsigned long long)t[i].cols,
		       (unsigned long long)prep, (double)prep / (1 << 20));
		if (prep >= budget) {
			printf(" > window: needs a window of at least %.2f GiB\n",
			       (double)prep / (1 << 30));
			continue;
		}
		/* per chunk: f32 input rows + scratch + payload */
		uint64_t rows = t[i].rows;
		for (;;) {
			uint64_t need = prep + rows * t[i].cols * 4 +
					s.ops->scratch_size(&s, rows, t[i].cols) +
					s.ops->payload_size(&s, rows, t[i].cols);
			if (need <= budget || rows == 1) {
				printf("\n    chunk of %llu rows: scratch %llu + input %llu + "
				       "payload %llu; total with prep %llu bytes (%.1f MiB) <= 1 GiB\n",
				       (unsigned long long)rows,
				       (unsigned long long)s.ops->scratch_size(&s, rows, t[i].cols),
				       (unsigned long long)(rows * t[i].cols * 4),
				       (unsigned long long)s.ops->payload_size(&s, rows, t[i].cols),
				       (unsigned long long)need, (double)need / (1 << 20));
				break;
			}
			rows /= 2;
		}
	}
}

int main(int argc, char **argv)
{
	bool quick = argc > 1 && strcmp(argv[1], "quick") == 0;
	printf("bench-gptq: kernels %s\n", qs_kernels_get()->name);
	if (argc > 1 && strcmp(argv[1], "speed") == 0) {
		speed(4096, 4096);
		return 0;
	}
	if (quick) {
		quality(64, 512, 1024);
		speed(256, 512);
	} else {
		quality(512, 2048, 4096);
		speed(4096, 4096);
	}
	memory();
	return 0;
}
