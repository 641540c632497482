/* ggml_check.c - the gguf scheme's payloads against the real ggml: loads
 * libggml-base.so (the build llama.cpp and node-llama-cpp ship) with
 * dlopen and checks, for every gguf type,
 *   - ggml's type traits agree with gguf_types.h (name, block, bytes);
 *   - ggml's to_float reads exactly (bit for bit) the floats qshard's
 *     dequantization reads, on random block bytes (every bit of every
 *     field exercised) and on qshard-quantized payloads of odd row counts
 *     and awkward values (zeros, denormals, large, constant, outliers),
 *     with every kernel level this CPU runs;
 *   - qshard's weight SQNR is no worse than ggml's own quantizer's
 *     (ggml_quantize_chunk, without importance) on Gaussian weights.
 * Usage: ggml_check PATH/libggml-base.so.  Exit 0 pass, 1 fail, 77 when
 * the library cannot be loaded (ggml-check.sh finds it). */
#include <dlfcn.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_types.h"
#include "kernels.h"

/* ggml.h (ggml-org/llama.cpp, ggml/include/ggml.h): the parts used here */
typedef void (*ggml_to_float_t)(const void *x, float *y, int64_t k);
typedef void (*ggml_from_float_t)(const float *x, void *y, int64_t k);
struct ggml_type_traits {
	const char *type_name;
	int64_t blck_size;
	int64_t blck_size_interleave;
	size_t type_size;
	bool is_quantized;
	ggml_to_float_t to_float;
	ggml_from_float_t from_float_ref;
};
typedef const struct ggml_type_traits *(*get_traits_fn)(int type);
typedef size_t (*quantize_chunk_fn)(int type, const float *src, void *dst, int64_t start,
				    int64_t nrows, int64_t n_per_row, const float *imatrix);
typedef void (*quantize_init_fn)(int type);

static get_traits_fn get_traits;
static quantize_chunk_fn quantize_chunk;
static int failures;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static double gauss(void)
{
	double u = ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
	double v = ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		perror("malloc");
		exit(2);
	}
	return p;
}

static void fail(const char *fmt, const char *type, const char *what, size_t at)
{
	if (failures++ < 20) {
		fprintf(stderr, fmt, type, what, at);
		fputc('\n', stderr);
	}
}

/* fp16 fields of random blocks: finite (exponent < 31), since a NaN's
 * payload is not part of the format */
static void tame_f16(uint8_t *p)
{
	if (((p[1] >> 2) & 0x1f) == 0x1f)
		p[1] &= 0x83;
}

static void randomize_block(unsigned type, uint8_t *b)
{
	unsigned n = qs_gguf_block_bytes(type);
	for (unsigned i = 0; i < n; i++)
		b[i] = (uint8_t)rnd();
	static const short at[QS_GGUF_NTYPES][2] = {
		{0, -1}, {0, -1}, {0, 2}, {0, -1}, {0, 2},
		{80, 82}, {108, -1}, {0, 2}, {0, 2}, {208, -1},
	};
	for (int k = 0; k < 2; k++)
		if (at[type][k] >= 0)
			tame_f16(b + at[type][k]);
}

/* ggml's floats and qshard's (every kernel level) for one payload. */
static void compare(unsigned type, const uint8_t *payload, size_t rows, size_t cols,
		    const char *what)
{
	const struct qs_gguf_type_info *ti = &qs_gguf_types[type];
	const struct ggml_type_traits *tr = get_traits((int)ti->ggml_type);
	size_t n = rows * cols, rb = (size_t)qs_gguf_row_bytes(type, cols);
	float *ref = xmalloc(n * sizeof(float)), *ours = xmalloc(n * sizeof(float));
	for (size_t r = 0; r < rows; r++)
		tr->to_float(payload + r * rb, ref + r * cols, (int64_t)cols);
	static const char *const levels[] = {"ref", "avx2", "neon"};
	for (size_t l = 0; l < 3; l++) {
		const struct qs_kernels *k = qs_kernels_by_name(levels[l]);
		if (!k)
			continue;
		size_t nb = cols / ti->block_weights;
		for (size_t r = 0; r < rows; r++)
			k->gguf_dequantize_row(type, payload + r * rb, nb, ours + r * cols);
		for (size_t i = 0; i < n; i++)
			if (memcmp(&ref[i], &ours[i], sizeof(float)) != 0) {
				char buf[96];
				snprintf(buf, sizeof(buf), "%s (%s: ggml %.9g, qshard %.9g)", what,
					 levels[l], ref[i], ours[i]);
				fail("%s: %s: dequantization differs from ggml at %zu", ti->name, buf, i);
				break;
			}
	}
	free(ref);
	free(ours);
}

/* qshard quantizes w with every level; the payloads must agree, and ggml
 * must read them as qshard does. */
static void check_quantized(unsigned type, const float *w, size_t rows, size_t cols,
			    const float *imp, const char *what)
{
	const struct qs_gguf_type_info *ti = &qs_gguf_types[type];
	size_t rb = (size_t)qs_gguf_row_bytes(type, cols), nb = cols / ti->block_weights;
	uint8_t *p0 = xmalloc(rows * rb), *p1 = xmalloc(rows * rb);
	const struct qs_kernels *r = qs_kernels_by_name("ref");
	for (size_t i = 0; i < rows; i++)
		r->gguf_quantize_row(type, w + i * cols, imp, nb, p0 + i * rb);
	static const char *const levels[] = {"avx2", "neon"};
	for (size_t l = 0; l < 2; l++) {
		const struct qs_kernels *k = qs_kernels_by_name(levels[l]);
		if (!k)
			continue;
		for (size_t i = 0; i < rows; i++)
			k->gguf_quantize_row(type, w + i * cols, imp, nb, p1 + i * rb);
		for (size_t i = 0; i < rows * rb; i++)
			if (p0[i] != p1[i]) {
				char buf[64];
				snprintf(buf, sizeof(buf), "%s (%s)", what, levels[l]);
				fail("%s: %s: payload differs from ref at byte %zu", ti->name, buf, i);
				break;
			}
	}
	compare(type, p0, rows, cols, what);
	free(p0);
	free(p1);
}

static double sqnr(const float *w, const float *q, size_t n)
{
	double s = 0, e = 0;
	for (size_t i = 0; i < n; i++) {
		s += (double)w[i] * w[i];
		e += ((double)w[i] - q[i]) * ((double)w[i] - q[i]);
	}
	return 10.0 * log10(s / (e > 0 ? e : 1e-300));
}

static void check_quality(unsigned type)
{
	const struct qs_gguf_type_info *ti = &qs_gguf_types[type];
	const struct ggml_type_traits *tr = get_traits((int)ti->ggml_type);
	size_t rows = 16, cols = 1024, n = rows * cols;
	size_t rb = (size_t)qs_gguf_row_bytes(type, cols);
	float *w = xmalloc(n * 4), *q = xmalloc(n * 4);
	uint8_t *p = xmalloc(rows * rb);
	for (size_t i = 0; i < n; i++)
		w[i] = (float)(0.02 * gauss());
	if (qs_gguf_quantize_rows(type, w, rows, cols, NULL, p) != 0)
		fail("%s: %s%zu", ti->name, "quantize_rows failed", 0);
	qs_gguf_dequantize_rows(type, p, rows, cols, q);
	double ours = sqnr(w, q, n);
	quantize_chunk((int)ti->ggml_type, w, p, 0, (int64_t)rows, (int64_t)cols, NULL);
	for (size_t r = 0; r < rows; r++)
		tr->to_float(p + r * rb, q + r * cols, (int64_t)cols);
	double theirs = sqnr(w, q, n);
	printf("%-5s weight SQNR qshard %6.2f dB, ggml %6.2f dB\n", ti->name, ours, theirs);
	if (ours < theirs - 0.05)
		fail("%s: %s%zu", ti->name, "weight SQNR below ggml's quantizer", 0);
	free(w);
	free(q);
	free(p);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: ggml_check PATH/libggml-base.so\n");
		return 2;
	}
	void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "ggml_check: %s, skipped\n", dlerror());
		return 77;
	}
	get_traits = (get_traits_fn)dlsym(h, "ggml_get_type_traits");
	quantize_chunk = (quantize_chunk_fn)dlsym(h, "ggml_quantize_chunk");
	quantize_init_fn qinit = (quantize_init_fn)dlsym(h, "ggml_quantize_init");
	if (!get_traits || !quantize_chunk || !qinit) {
		fprintf(stderr, "ggml_check: '%s' lacks ggml_get_type_traits/ggml_quantize_chunk\n",
			argv[1]);
		return 1;
	}

	for (unsigned t = 0; t < QS_GGUF_NTYPES; t++) {
		const struct qs_gguf_type_info *ti = &qs_gguf_types[t];
		const struct ggml_type_traits *tr = get_traits((int)ti->ggml_type);
		if (!tr || !tr->type_name || strcmp(tr->type_name, ti->name) != 0 ||
		    tr->blck_size != (int64_t)ti->block_weights || tr->type_size != ti->block_bytes ||
		    ti->block_bytes != qs_gguf_block_bytes(t) ||
		    ti->block_weights != qs_gguf_block_weights(t) || !tr->to_float) {
			fail("%s: %s%zu", ti->name, "type traits differ from ggml's ", t);
			continue;
		}
		qinit((int)ti->ggml_type);

		/* random bytes: 3 rows of 5 blocks */
		size_t bw = ti->block_weights, cols = 5 * bw, rows = 3;
		size_t rb = (size_t)qs_gguf_row_bytes(t, cols);
		uint8_t *rp = xmalloc(rows * rb);
		for (int rep = 0; rep < 20; rep++) {
			for (size_t b = 0; b < rows * 5; b++)
				randomize_block(t, rp + b * ti->block_bytes);
			compare(t, rp, rows, cols, "random bytes");
		}
		free(rp);

		/* quantized payloads: odd row counts, awkward values */
		cols = 2 * QS_GGUF_QK_K;
		for (int kind = 0; kind < 8; kind++) {
			rows = kind == 0 ? 1 : kind % 2 ? 3 : 7;
			size_t n = rows * cols;
			float *w = xmalloc(n * 4), *imp = xmalloc(cols * 4);
			const char *what = "?";
			for (size_t i = 0; i < n; i++) {
				double g = gauss();
				switch (kind) {
				case 0: what = "gaussian"; w[i] = (float)(0.02 * g); break;
				case 1: what = "zeros"; w[i] = (i % 3) ? 0.0f : -0.0f; break;
				case 2: what = "denormals"; w[i] = (float)(1e-41 * g); break;
				case 3: what = "large"; w[i] = (float)(1500.0 * g); break;
				case 4: what = "constant"; w[i] = 0.25f; break;
				case 5: what = "outliers";
					w[i] = (float)(i % 97 == 0 ? 40.0 * g : 0.01 * g); break;
				case 6: what = "tiny and normal";
					w[i] = (float)((i / 32) % 2 ? 1e-6 * g : g); break;
				default: what = "positive"; w[i] = (float)fabs(g) + 1.0f; break;
				}
			}
			for (size_t j = 0; j < cols; j++)
				imp[j] = (float)(j % 7 == 0 ? 10.0 : 0.1 + fabs(gauss()));
			check_quantized(t, w, rows, cols, NULL, what);
			check_quantized(t, w, rows, cols, imp, what);
			free(w);
			free(imp);
		}
		check_quality(t);
	}
	if (failures)
		fprintf(stderr, "ggml_check: %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
