/* bench-gguf.c - the gguf scheme against ggml's own quantizer on the same
 * tensors: single-core speed and quality, per ggml type.
 *
 * ggml is libggml-base.so from node-llama-cpp (dlopen; -g PATH or
 * $QSHARD_GGML_BASE, else where contrib/quickstart.sh installs it); it is
 * called through ggml_quantize_chunk (with and without an imatrix) and its
 * type traits' to_float.
 *
 * Data: the 2-D weights of layer 0 of CKPT (bf16 or f32; -r rows of each),
 * and synthetic activations: calibration X1 (-n tokens) and held-out X2 of
 * the same law, x = F A + 0.3 e with 16 latent factors F A and noise e,
 * and 0.5% of the channels scaled x20 (hot channels).  The importance is
 * mean(x^2) over X1 per column (what llama.cpp's imatrix holds), the
 * Hessian X1^T X1 / n.
 *
 * Per type, summed over the tensors:
 *   MB/s    f32 input per second of this thread's CPU time, best of 3 runs
 *           of at least -t seconds each (qshard: the kernel level QSHARD_SIMD
 *           selects; ggml: its reference C quantizers, which is what
 *           llama-quantize runs);
 *   wSQNR   10 log10(sum w^2 / sum (w - w')^2), without importance;
 *   oSQNR   the same for the outputs W X2^T, held-out tokens: qshard with
 *           the importance, ggml with the same numbers as imatrix, and
 *           qshard with --hessian (GPTQ on the type's grid).
 *
 * usage: bench-gguf CKPT [-g LIBGGML] [-r ROWS] [-n TOKENS] [-t SECONDS]
 *                        [-T TYPE]... [-H (skip the Hessian runs)]
 */
#include <cblas.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gguf_types.h"
#include "kernels.h"
#include "qshard.h"
#include "safetensors.h"
#include "scheme.h"

#define MAX_TENSORS 16
#define NFACT 16

typedef void (*to_float_fn)(const void *x, float *y, int64_t k);
struct ggml_traits {
	const char *type_name;
	int64_t blck_size, blck_size_interleave;
	size_t type_size;
	_Bool is_quantized;
	to_float_fn to_float;
	void *from_float_ref;
};
typedef const struct ggml_traits *(*traits_fn)(int);
typedef size_t (*qchunk_fn)(int, const float *, void *, int64_t, int64_t, int64_t, const float *);
typedef void (*qinit_fn)(int);

static traits_fn g_traits;
static qchunk_fn g_quantize;

struct tensor {
	char name[128];
	size_t rows, cols;
	float *w;        /* rows x cols */
	float *x2;       /* held-out tokens x cols */
	float *imp;      /* cols: mean x^2 over X1 */
	float *h;        /* cols x cols: X1^T X1 / n, or NULL */
	double y2;       /* sum (W X2^T)^2 */
};

static struct tensor tens[MAX_TENSORS];
static size_t ntens, ntok = 1024, nheld = 256;

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "bench-gguf: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("%s", "out of memory");
	return p;
}

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double unif(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (double)((rng * 0x2545f4914f6cdd1dull) >> 11) * 0x1p-53;
}

static double gauss(void)
{
	double u = unif(), v = unif();
	return sqrt(-2.0 * log(u > 0 ? u : 1e-300)) * cos(6.283185307179586 * v);
}

/* ntok tokens of the activation law for a layer of `cols` inputs */
static void activations(size_t cols, size_t n, const float *mix, const float *hot, float *x)
{
	for (size_t t = 0; t < n; t++) {
		float f[NFACT];
		for (size_t k = 0; k < NFACT; k++)
			f[k] = (float)gauss();
		for (size_t j = 0; j < cols; j++) {
			float v = 0.3f * (float)gauss();
			for (size_t k = 0; k < NFACT; k++)
				v += f[k] * mix[k * cols + j];
			x[t * cols + j] = v * hot[j];
		}
	}
}

static void load(const char *path, size_t maxrows, int want_h)
{
	struct qs_checkpoint *ck;
	struct qs_diag diag;
	regex_t re;
	memset(&diag, 0, sizeof(diag));
	if (qs_checkpoint_open(path, &ck, &diag) < 0)
		die("%s", diag.msg);
	regcomp(&re, "layers\\.0\\..*weight$", REG_EXTENDED | REG_NOSUB);
	for (size_t i = 0; i < ck->ntensors && ntens < MAX_TENSORS; i++) {
		const struct qs_st_tensor *t = &ck->tensors[i];
		if (regexec(&re, t->name, 0, NULL, 0) || t->ndim != 2 ||
		    (t->dtype != QS_DTYPE_BF16 && t->dtype != QS_DTYPE_F32) || t->shape[1] % 256)
			continue;
		struct tensor *o = &tens[ntens++];
		snprintf(o->name, sizeof(o->name), "%s", t->name);
		o->cols = (size_t)t->shape[1];
		o->rows = (size_t)t->shape[0] < maxrows ? (size_t)t->shape[0] : maxrows;
		size_t n = o->rows * o->cols, es = t->dtype == QS_DTYPE_BF16 ? 2 : 4;
		void *raw = xmalloc(es * n);
		o->w = xmalloc(4 * n);
		int fd = open(ck->shards[t->shard].path, O_RDONLY);
		if (fd < 0 || pread(fd, raw, es * n, (off_t)t->offset) != (ssize_t)(es * n))
			die("cannot read '%s'", ck->shards[t->shard].path);
		close(fd);
		if (es == 2)
			qs_kernels_ref.bf16_to_f32(raw, o->w, n);
		else
			memcpy(o->w, raw, 4 * n);
		free(raw);

		/* activations for this layer's inputs */
		size_t c = o->cols;
		float *mix = xmalloc(4 * NFACT * c), *hot = xmalloc(4 * c);
		for (size_t k = 0; k < NFACT * c; k++)
			mix[k] = (float)(gauss() / sqrt((double)NFACT));
		for (size_t j = 0; j < c; j++)
			hot[j] = unif() < 0.005 ? 20.0f : 1.0f;
		float *x1 = xmalloc(4 * ntok * c);
		o->x2 = xmalloc(4 * nheld * c);
		activations(c, ntok, mix, hot, x1);
		activations(c, nheld, mix, hot, o->x2);
		o->imp = xmalloc(4 * c);
		for (size_t j = 0; j < c; j++) {
			double s = 0;
			for (size_t t2 = 0; t2 < ntok; t2++)
				s += (double)x1[t2 * c + j] * x1[t2 * c + j];
			o->imp[j] = (float)(s / (double)ntok);
		}
		o->h = NULL;
		if (want_h) {
			o->h = xmalloc(4 * c * c);
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c, (int)c, (int)ntok,
				    1.0f / (float)ntok, x1, (int)c, x1, (int)c, 0.0f, o->h, (int)c);
		}
		free(x1);
		free(mix);
		free(hot);
		float *y = xmalloc(4 * o->rows * nheld);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)o->rows, (int)nheld, (int)c,
			    1.0f, o->w, (int)c, o->x2, (int)c, 0.0f, y, (int)nheld);
		o->y2 = 0;
		for (size_t k = 0; k < o->rows * nheld; k++)
			o->y2 += (double)y[k] * y[k];
		free(y);
	}
	regfree(&re);
	qs_checkpoint_free(ck);
	if (!ntens)
		die("no bf16/f32 layers.0 weights with rows of a multiple of 256 in '%s'", path);
}

/* error energies of q against tensor t: weights and held-out outputs */
static void errors(const struct tensor *t, const float *q, double *we, double *ws, double *oe)
{
	size_t n = t->rows * t->cols;
	float *d = xmalloc(4 * n), *y = xmalloc(4 * t->rows * nheld);
	double e = 0, s = 0;
	for (size_t i = 0; i < n; i++) {
		d[i] = t->w[i] - q[i];
		e += (double)d[i] * d[i];
		s += (double)t->w[i] * t->w[i];
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)t->rows, (int)nheld, (int)t->cols,
		    1.0f, d, (int)t->cols, t->x2, (int)t->cols, 0.0f, y, (int)nheld);
	double o = 0;
	for (size_t k = 0; k < t->rows * nheld; k++)
		o += (double)y[k] * y[k];
	*we += e;
	*ws += s;
	*oe += o;
	free(d);
	free(y);
}

static double db(double s, double e)
{
	return 10.0 * log10(s / (e > 0 ? e : 1e-300));
}

enum { QS_PLAIN, QS_IMP, GG_PLAIN, GG_IMP, QS_HESS, NVAR };

/* quantize tensor t with variant v into p, then (q not NULL) dequantize
 * into q */
static void run(unsigned type, int v, const struct tensor *t, uint8_t *p, float *q)
{
	const struct qs_gguf_type_info *ti = &qs_gguf_types[type];
	size_t rb = (size_t)qs_gguf_row_bytes(type, t->cols);
	if (v == QS_PLAIN || v == QS_IMP) {
		if (qs_gguf_quantize_rows(type, t->w, t->rows, t->cols, v == QS_IMP ? t->imp : NULL,
					  p))
			die("%s: qshard quantize failed", ti->name);
		if (q)
			qs_gguf_dequantize_rows(type, p, t->rows, t->cols, q);
		return;
	}
	if (v == GG_PLAIN || v == GG_IMP) {
		g_quantize((int)ti->ggml_type, t->w, p, 0, (int64_t)t->rows, (int64_t)t->cols,
			   v == GG_IMP ? t->imp : NULL);
		const struct ggml_traits *tr = g_traits((int)ti->ggml_type);
		for (size_t r = 0; q && r < t->rows; r++)
			tr->to_float(p + r * rb, q + r * t->cols, (int64_t)t->cols);
		return;
	}
	char spec[64];
	snprintf(spec, sizeof(spec), "gguf:type=%s", ti->name);
	struct qs_scheme s;
	struct qs_diag d;
	memset(&d, 0, sizeof(d));
	if (qs_scheme_parse(spec, &s, &d))
		die("%s", d.msg);
	s.stats = QS_WANT_HESSIAN | QS_WANT_IMPORTANCE;
	void *prep = xmalloc((size_t)s.ops->prep_size(&s, t->cols));
	void *scr = xmalloc((size_t)s.ops->scratch_size(&s, t->rows, t->cols));
	struct qs_tensor_stats st = {.name = t->name, .cols = t->cols, .importance = t->imp,
				     .hessian = t->h};
	if (s.ops->prepare(&s, &st, prep, &d) || s.ops->quantize_prep(&s, prep, t->w, t->rows,
								     t->cols, p, scr))
		die("%s: gptq failed", spec);
	s.ops->dequantize(&s, p, t->rows, t->cols, q, NULL);
	free(prep);
	free(scr);
}

/* best of 3 of: MB/s of f32 input, CPU time of this thread, quantization
 * only */
static double speed(unsigned type, int v, uint8_t **p, double secs)
{
	double best = 0;
	for (int trial = 0; trial < 3; trial++) {
		double t0 = cpu_now(), bytes = 0;
		do {
			for (size_t i = 0; i < ntens; i++) {
				run(type, v, &tens[i], p[i], NULL);
				bytes += 4.0 * (double)(tens[i].rows * tens[i].cols);
			}
		} while (cpu_now() - t0 < secs);
		double mbs = bytes / (cpu_now() - t0) / 1e6;
		best = mbs > best ? mbs : best;
	}
	return best;
}

int main(int argc, char **argv)
{
	const char *lib = getenv("QSHARD_GGML_BASE"), *ckpt = NULL;
	size_t rows = 256;
	double secs = 0.3;
	int want_h = 1, types[QS_GGUF_NTYPES], ntypes = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-g") && i + 1 < argc)
			lib = argv[++i];
		else if (!strcmp(argv[i], "-r") && i + 1 < argc)
			rows = (size_t)atol(argv[++i]);
		else if (!strcmp(argv[i], "-n") && i + 1 < argc)
			ntok = (size_t)atol(argv[++i]);
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			secs = atof(argv[++i]);
		else if (!strcmp(argv[i], "-H"))
			want_h = 0;
		else if (!strcmp(argv[i], "-T") && i + 1 < argc) {
			int t = qs_gguf_type_find(argv[++i]);
			if (t < 0 || ntypes >= QS_GGUF_NTYPES)
				die("unknown type '%s'", argv[i]);
			types[ntypes++] = t;
		} else if (argv[i][0] != '-' && !ckpt)
			ckpt = argv[i];
		else
			die("usage: bench-gguf CKPT [-g LIBGGML] [-r ROWS] [-n TOKENS] [-t SECONDS] "
			    "[-T TYPE]... [-H]%s", "");
	}
	if (!ckpt)
		die("usage: bench-gguf CKPT [-g LIBGGML] [-r ROWS] [-n TOKENS] [-t SECONDS] "
		    "[-T TYPE]... [-H]%s", "");
	if (!ntypes)
		for (int t = 0; t < QS_GGUF_NTYPES; t++)
			types[ntypes++] = t;
	if (!lib)
		lib = "/opt/node-llama-cpp/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/"
		      "libggml-base.so";
	void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		die("cannot load libggml-base: %s", dlerror());
	g_traits = (traits_fn)dlsym(h, "ggml_get_type_traits");
	g_quantize = (qchunk_fn)dlsym(h, "ggml_quantize_chunk");
	qinit_fn qinit = (qinit_fn)dlsym(h, "ggml_quantize_init");
	if (!g_traits || !g_quantize || !qinit)
		die("'%s' lacks the ggml quantization API", lib);
	openblas_set_num_threads(1);
	load(ckpt, rows, want_h);

	uint64_t weights = 0;
	for (size_t i = 0; i < ntens; i++)
		weights += tens[i].rows * tens[i].cols;
	printf("bench-gguf: %zu tensors of '%s' (%llu weights, %zu rows each at most), "
	       "kernels %s, %zu calibration + %zu held-out tokens\n",
	       ntens, ckpt, (unsigned long long)weights, rows, qs_kernels_get()->name, ntok, nheld);
	printf("%-5s %6s | %9s %9s %9s %6s | %6s %6s | %6s %6s %6s | %6s\n", "type", "bpw",
	       "qs MB/s", "ggml", "ggml+im", "x", "wSQNR", "ggml", "oSQNR", "ggml", "+imp",
	       "+hess");
	printf("%-5s %6s | %9s %9s %9s %6s | %6s %6s | %6s %6s %6s | %6s\n", "", "", "", "", "",
	       "", "qs", "", "qs+imp", "+imat", "gain", "qs");
	uint8_t *p[MAX_TENSORS];
	float *q[MAX_TENSORS];
	for (size_t i = 0; i < ntens; i++) {
		p[i] = xmalloc(tens[i].rows * tens[i].cols * 2);
		q[i] = xmalloc(4 * tens[i].rows * tens[i].cols);
	}
	for (int k = 0; k < ntypes; k++) {
		unsigned type = (unsigned)types[k];
		const struct qs_gguf_type_info *ti = &qs_gguf_types[type];
		qinit((int)ti->ggml_type);
		double we[NVAR] = {0}, ws[NVAR] = {0}, oe[NVAR] = {0}, y2 = 0;
		for (int v = 0; v < NVAR; v++) {
			if (v == QS_HESS && !want_h)
				continue;
			for (size_t i = 0; i < ntens; i++) {
				run(type, v, &tens[i], p[i], q[i]);
				errors(&tens[i], q[i], &we[v], &ws[v], &oe[v]);
			}
		}
		for (size_t i = 0; i < ntens; i++)
			y2 += tens[i].y2;
		double s_qs = speed(type, QS_PLAIN, p, secs);
		double s_gg = speed(type, GG_PLAIN, p, secs);
		double s_gi = speed(type, GG_IMP, p, secs);
		double osq = db(y2, oe[QS_IMP]), osg = db(y2, oe[GG_IMP]);
		printf("%-5s %6.3f | %9.1f %9.1f %9.1f %6.1f | %6.2f %6.2f | %6.2f %6.2f %+6.2f | ",
		       ti->name, 8.0 * ti->block_bytes / ti->block_weights, s_qs, s_gg, s_gi,
		       s_qs / s_gg, db(ws[QS_PLAIN], we[QS_PLAIN]), db(ws[GG_PLAIN], we[GG_PLAIN]),
		       osq, osg, osq - osg);
		if (want_h)
			printf("%6.2f (%+.2f)\n", db(y2, oe[QS_HESS]), db(y2, oe[QS_HESS]) - osg);
		else
			printf("%6s\n", "-");
		fflush(stdout);
	}
	return 0;
}
