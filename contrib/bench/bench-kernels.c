/* bench-kernels.c - quality and single-thread speed of every quantization
 * scheme on the linear weights of a (mkckpt) checkpoint.
 *
 * For each scheme spec: nominal bits per weight (payload, metadata
 * included), on-disk bpw after zstd level 3 of the payload, weight SQNR
 * 10 log10(sum w^2 / sum (w - w')^2) and output SQNR 10 log10(sum (WX)^2 /
 * sum ((W - W')X)^2) over all sampled tensors, for activations X of 64
 * Gaussian token vectors with 0.5% of the channels scaled x20 (the hot
 * channels of LLM.int8()/AWQ), and GB/s of bf16 input (bf16 -> f32 plus
 * quantize, one thread) for every SIMD level this machine runs.  The
 * kernel table is chosen once per process (QSHARD_SIMD), so each level's
 * speed is measured by a child process of this program.
 *
 * usage: bench-kernels CKPT [-r ROWS] [-t SECONDS] [-s SPEC]... [-a]
 *   -r  rows sampled from each tensor (default 256)
 *   -t  minimum timing per spec and level (default 0.3 s)
 *   -s  scheme spec (repeatable; default: rtn 2/3/4/8 and adpq 2/3/4)
 *   -a  also the adpq ablations (search, scales, layout, alpha)
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zstd.h>

#include "kernels.h"
#include "qshard.h"
#include "safetensors.h"
#include "scheme.h"

#define MAX_SPECS 64
#define MAX_TENSORS 16
#define NTOK 64

struct tensor {
	char name[128];
	size_t rows, cols;
	uint16_t *bf16;  /* rows x cols */
	float *w;        /* the same, as f32 */
	float *wx;       /* rows x NTOK: W X */
};

static struct tensor tens[MAX_TENSORS];
static size_t ntens;
static const char *specs[MAX_SPECS];
static size_t nspecs;

static const char *default_specs[] = {
	"rtn:bits=2,group=128", "rtn:bits=3,group=128", "rtn:bits=4,group=128",
	"rtn:bits=8,group=128", "adpq:bits=2", "adpq:bits=3", "adpq:bits=4",
	"rtn:bits=4,group=64", "daq:bits=4,format=nf4,group=64", "daq:bits=4,format=fp4,group=64",
	"daq:bits=4,format=int,group=64", "daq:bits=4,format=nf4,group=128",
	"claq:bits=3.0", "claq:bits=3.1", "claq:bits=4.0",
};

static const char *ablation_specs[] = {
	"rtn:bits=3,group=64", "rtn:bits=4,group=64",
	"adpq:bits=3,search=0", "adpq:bits=3,search=8", "adpq:bits=3,search=12",
	"adpq:bits=3,scales=f16", "adpq:bits=3,layout=tight",
	"adpq:bits=3,alpha=0", "adpq:bits=3,alpha=0.01", "adpq:bits=3,alpha=0.03",
	"adpq:bits=4,search=0", "adpq:bits=4,search=8", "adpq:bits=4,alpha=0.01",
	"adpq:bits=4,alpha=0.03", "adpq:bits=4,layout=tight",
	"adpq:bits=2,search=8", "adpq:bits=2,search=16",
};

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "bench-kernels: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	exit(1);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
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

/* X for `cols` input channels: cols x NTOK, row-major. */
static float *make_x(size_t cols)
{
	float *x = malloc(cols * NTOK * sizeof(*x));
	if (!x)
		die("%s", "out of memory");
	for (size_t c = 0; c < cols; c++) {
		double s = unif() < 0.005 ? 20.0 : 1.0;
		for (size_t t = 0; t < NTOK; t++)
			x[c * NTOK + t] = (float)(s * gauss());
	}
	return x;
}

/* y[rows x NTOK] = m[rows x cols] x[cols x NTOK], in double. */
static void matmul(const float *m, size_t rows, size_t cols, const float *x, double *y)
{
	for (size_t r = 0; r < rows; r++) {
		double *yr = y + r * NTOK;
		memset(yr, 0, NTOK * sizeof(*yr));
		for (size_t c = 0; c < cols; c++) {
			double a = m[r * cols + c];
			const float *xc = x + c * NTOK;
			for (size_t t = 0; t < NTOK; t++)
				yr[t] += a * xc[t];
		}
	}
}

static void load(const char *path, size_t maxrows)
{
	struct qs_checkpoint *ck;
	struct qs_diag diag;
	regex_t re;

	memset(&diag, 0, sizeof(diag));
	if (qs_checkpoint_open(path, &ck, &diag) < 0)
		die("%s", diag.msg);
	regcomp(&re, "layers\\.0\\.(self_attn|mlp)\\.[a-z]+_proj\\.weight$",
		REG_EXTENDED | REG_NOSUB);
	for (size_t i = 0; i < ck->ntensors && ntens < MAX_TENSORS; i++) {
		const struct qs_st_tensor *t = &ck->tensors[i];
		if (regexec(&re, t->name, 0, NULL, 0) || t->dtype != QS_DTYPE_BF16 ||
		    t->ndim != 2)
			continue;
		struct tensor *o = &tens[ntens++];
		snprintf(o->name, sizeof(o->name), "%s", t->name);
		o->cols = (size_t)t->shape[1];
		o->rows = (size_t)t->shape[0] < maxrows ? (size_t)t->shape[0] : maxrows;
		size_t n = o->rows * o->cols;
		o->bf16 = malloc(2 * n);
		o->w = malloc(4 * n);
		if (!o->bf16 || !o->w)
			die("%s", "out of memory");
		int fd = open(ck->shards[t->shard].path, O_RDONLY);
		if (fd < 0 || pread(fd, o->bf16, 2 * n, (off_t)t->offset) != (ssize_t)(2 * n))
			die("cannot read '%s'", ck->shards[t->shard].path);
		close(fd);
		/* the file is little-endian, like every host we build for */
		qs_kernels_ref.bf16_to_f32(o->bf16, o->w, n);
	}
	regfree(&re);
	qs_checkpoint_free(ck);
	if (!ntens)
		die("no bf16 layers.0 linear weights in '%s'", path);
}

struct result {
	double bpw, bpw_disk, wsqnr, osqnr;
};

static void *xmalloc(uint64_t n)
{
	void *p = n < SIZE_MAX ? malloc((size_t)n + 1) : NULL;
	if (!p)
		die("%s", "out of memory");
	return p;
}

static void parse_spec(const char *spec, struct qs_scheme *s)
{
	struct qs_diag diag;
	memset(&diag, 0, sizeof(diag));
	if (qs_scheme_parse(spec, s, &diag) < 0)
		die("%s", diag.msg);
}

/* With imp, schemes that take importance get the mean of x_j^2 over the
 * same tokens X the output SQNR uses (quantize_prep), else weight-only. */
static struct result quality(const char *spec, int imp)
{
	struct qs_scheme s;
	struct result res;
	double sw = 0, se = 0, so = 0, seo = 0, nw = 0, pay = 0, disk = 0;

	parse_spec(spec, &s);
	for (size_t i = 0; i < ntens; i++) {
		struct tensor *t = &tens[i];
		size_t n = t->rows * t->cols;
		uint64_t psz = s.ops->payload_size(&s, t->rows, t->cols);
		uint64_t ssz = s.ops->scratch_size(&s, t->rows, t->cols);
		uint8_t *p = xmalloc(psz);
		void *scr = xmalloc(ssz);
		float *d = xmalloc(4 * (uint64_t)n);
		rng = 0x9e3779b97f4a7c15ull + 0x1000193ull * i;  /* the same X for every spec */
		float *x = make_x(t->cols);
		int qrc;
		if (imp && s.ops->prepare) {
			float *iv = xmalloc(4 * (uint64_t)t->cols);
			void *prep = xmalloc(s.ops->prep_size(&s, t->cols));
			for (size_t c = 0; c < t->cols; c++) {
				double a = 0;
				for (size_t k = 0; k < NTOK; k++)
					a += (double)x[c * NTOK + k] * x[c * NTOK + k];
				iv[c] = (float)(a / NTOK);
			}
			struct qs_tensor_stats st = {.name = t->name, .cols = t->cols,
						     .importance = iv};
			qrc = s.ops->prepare(&s, &st, prep, NULL) ||
			      s.ops->quantize_prep(&s, prep, t->w, t->rows, t->cols, p, scr);
			free(prep);
			free(iv);
		} else {
			qrc = s.ops->quantize(&s, t->w, t->rows, t->cols, p, scr);
		}
		if (qrc || s.ops->dequantize(&s, p, t->rows, t->cols, d, scr))
			die("%s: quantize failed", spec);
		size_t cb = ZSTD_compressBound((size_t)psz);
		void *z = xmalloc(cb);
		size_t zs = ZSTD_compress(z, cb, p, (size_t)psz, 3);
		if (ZSTD_isError(zs))
			die("%s", "zstd failed");
		for (size_t j = 0; j < n; j++) {
			double e = (double)t->w[j] - d[j];
			sw += (double)t->w[j] * t->w[j];
			se += e * e;
			d[j] = (float)e;
		}
		double *y = malloc(t->rows * NTOK * sizeof(*y));
		if (!t->wx) {
			t->wx = malloc(t->rows * NTOK * sizeof(*t->wx));
			matmul(t->w, t->rows, t->cols, x, y);
			for (size_t j = 0; j < t->rows * NTOK; j++)
				t->wx[j] = (float)y[j];
		}
		matmul(d, t->rows, t->cols, x, y);
		for (size_t j = 0; j < t->rows * NTOK; j++) {
			so += (double)t->wx[j] * t->wx[j];
			seo += y[j] * y[j];
		}
		nw += (double)n;
		pay += (double)psz;
		disk += (double)zs;
		free(y);
		free(x);
		free(z);
		free(d);
		free(scr);
		free(p);
	}
	res.bpw = 8.0 * pay / nw;
	res.bpw_disk = 8.0 * disk / nw;
	res.wsqnr = 10.0 * log10(sw / se);
	res.osqnr = 10.0 * log10(so / seo);
	return res;
}

/* GB/s of bf16 input through bf16 -> f32 and quantize, with this process's
 * kernel table. */
static double speed(const char *spec, double min_time)
{
	struct qs_scheme s;
	const struct qs_kernels *k = qs_kernels_get();
	size_t maxn = 0;
	uint64_t maxp = 0, maxs = 0;

	parse_spec(spec, &s);
	for (size_t i = 0; i < ntens; i++) {
		size_t n = tens[i].rows * tens[i].cols;
		uint64_t p = s.ops->payload_size(&s, tens[i].rows, tens[i].cols);
		uint64_t sc = s.ops->scratch_size(&s, tens[i].rows, tens[i].cols);
		maxn = n > maxn ? n : maxn;
		maxp = p > maxp ? p : maxp;
		maxs = sc > maxs ? sc : maxs;
	}
	float *f = xmalloc(4 * (uint64_t)maxn);
	uint8_t *p = xmalloc(maxp);
	void *scr = xmalloc(maxs);
	double bytes = 0, t0 = now(), t;
	do {
		for (size_t i = 0; i < ntens; i++) {
			size_t n = tens[i].rows * tens[i].cols;
			k->bf16_to_f32(tens[i].bf16, f, n);
			if (s.ops->quantize(&s, f, tens[i].rows, tens[i].cols, p, scr))
				die("%s: quantize failed", spec);
			bytes += 2.0 * (double)n;
		}
		t = now() - t0;
	} while (t < min_time);
	free(scr);
	free(p);
	free(f);
	return bytes / t / 1e9;
}

int main(int argc, char **argv)
{
	const char *ckpt = NULL;
	size_t rows = 256;
	double min_time = 0.3;
	int speed_only = 0, ablate = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
			rows = (size_t)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
			min_time = strtod(argv[++i], NULL);
		else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc && nspecs < MAX_SPECS)
			specs[nspecs++] = argv[++i];
		else if (strcmp(argv[i], "-a") == 0)
			ablate = 1;
		else if (strcmp(argv[i], "--speed-only") == 0)
			speed_only = 1;
		else if (argv[i][0] != '-' && !ckpt)
			ckpt = argv[i];
		else
			die("usage: bench-kernels CKPT [-r ROWS] [-t SECONDS] [-s SPEC]... [-a]%s",
			    "");
	}
	if (!ckpt || rows == 0)
		die("usage: bench-kernels CKPT [-r ROWS] [-t SECONDS] [-s SPEC]... [-a]%s", "");
	if (!nspecs) {
		for (size_t i = 0; i < sizeof(default_specs) / sizeof(*default_specs); i++)
			specs[nspecs++] = default_specs[i];
		for (size_t i = 0; ablate && i < sizeof(ablation_specs) / sizeof(*ablation_specs);
		     i++)
			specs[nspecs++] = ablation_specs[i];
	}
	load(ckpt, rows);

	if (speed_only) {
		for (size_t i = 0; i < nspecs; i++)
			printf("%.4f\n", speed(specs[i], min_time));
		return 0;
	}

	/* one child per SIMD level: the kernel table is fixed per process */
	static const char *const levels[] = {"ref", "avx2", "avx512", "neon"};
	enum { NLEVELS = sizeof(levels) / sizeof(levels[0]) };
	const char *have[NLEVELS];
	size_t nlev = 0;
	double gbps[MAX_SPECS][NLEVELS];
	char self[4096];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl <= 0)
		die("%s", "cannot find /proc/self/exe");
	self[sl] = '\0';
	for (size_t l = 0; l < NLEVELS; l++) {
		if (!qs_kernels_by_name(levels[l]))
			continue;
		char cmd[16384];
		int n = snprintf(cmd, sizeof(cmd), "QSHARD_SIMD=%s '%s' '%s' -r %zu -t %g --speed-only",
				 levels[l], self, ckpt, rows, min_time);
		for (size_t i = 0; i < nspecs && n > 0 && (size_t)n < sizeof(cmd); i++)
			n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, " -s '%s'", specs[i]);
		FILE *f = popen(cmd, "r");
		if (!f)
			die("%s", "popen failed");
		for (size_t i = 0; i < nspecs; i++)
			if (fscanf(f, "%lf", &gbps[i][nlev]) != 1)
				die("speed run for %s failed", levels[l]);
		if (pclose(f) != 0)
			die("speed run for %s failed", levels[l]);
		have[nlev++] = levels[l];
	}

	size_t nw = 0;
	for (size_t i = 0; i < ntens; i++)
		nw += tens[i].rows * tens[i].cols;
	printf("bench-kernels: %zu tensors (%s ...), %zu rows each at most, %.1f M weights, "
	       "X = %d tokens, 0.5%% hot channels x20\n",
	       ntens, tens[0].name, rows, (double)nw / 1e6, NTOK);
	printf("%-66s %6s %6s %7s %7s", "scheme", "bpw", "disk", "wSQNR", "oSQNR");
	for (size_t l = 0; l < nlev; l++)
		printf(" %9s", have[l]);
	printf("\n%-66s %6s %6s %7s %7s", "", "", "zstd3", "dB", "dB");
	for (size_t l = 0; l < nlev; l++)
		printf(" %9s", "GB/s");
	printf("\n");
	for (size_t i = 0; i < nspecs; i++) {
		struct qs_scheme s;
		parse_spec(specs[i], &s);
		struct result r = quality(specs[i], 0);
		printf("%-66s %6.3f %6.3f %7.2f %7.2f", s.text, r.bpw, r.bpw_disk, r.wsqnr,
		       r.osqnr);
		for (size_t l = 0; l < nlev; l++)
			printf(" %9.3f", gbps[i][l]);
		printf("\n");
		if (s.ops->prepare && (s.ops->wants & QS_WANT_IMPORTANCE)) {
			char label[160];
			r = quality(specs[i], 1);
			snprintf(label, sizeof(label), "%s +importance", s.text);
			printf("%-66s %6.3f %6.3f %7.2f %7.2f\n", label, r.bpw, r.bpw_disk,
			       r.wsqnr, r.osqnr);
		}
		fflush(stdout);
	}
	printf("%-66s %6s %6s %7s %7s\n", "llama.cpp Q3_K, reference (from issue)", "3.44", "-",
	       "~15", "-");
	printf("%-66s %6s %6s %7s %7s\n", "llama.cpp Q4_K, reference (from issue)", "4.50", "-",
	       "~21.4", "-");
	for (size_t i = 0; i < ntens; i++) {
		free(tens[i].bf16);
		free(tens[i].w);
		free(tens[i].wx);
	}
	return 0;
}
