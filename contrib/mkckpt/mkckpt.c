/*
 * mkckpt — write a synthetic Llama-family checkpoint in Hugging Face layout
 * (config.json, safetensors shards, model.safetensors.index.json, and a
 * byte-level BPE tokenizer.json with tokenizer_config.json,
 * special_tokens_map.json and generation_config.json) for tests, demos and
 * benchmarks of qshard.
 *
 * Standalone on purpose (libc, libm, jansson only): it must be able to
 * produce inputs for the library under test without sharing its code.
 *
 * Output is streamed: each tensor is generated row by row into a fixed
 * buffer, so a 140 GB 70b checkpoint needs a few MB of memory.  The values of
 * a tensor depend only on (seed, preset, dtype, tensor name): every tensor has
 * its own PRNG stream seeded from the seed and a hash of its name, so neither
 * --layers nor --shard-size changes the bytes of a tensor present in both runs.
 *
 * safetensors layout: https://github.com/huggingface/safetensors (README,
 * "Format"): u64 LE header length N, N bytes of JSON, then the raw data.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define EXIT_IO 1
#define EXIT_USAGE 2

/* Large enough that write() syscalls are not the bottleneck, small enough
 * that memory stays "a few MB" whatever the checkpoint. */
#define OUTBUF_SIZE (4u << 20)

/* HF's default max_shard_size is "5GB", which transformers parses as 5 * 10^9
 * bytes (decimal), unlike our K/M/G suffixes which are powers of 1024. */
#define HF_DEFAULT_SHARD ((uint64_t)5000000000ull)

/* ------------------------------------------------------------------ model */

struct preset {
	const char *name;
	unsigned hidden, inter, layers, heads, kv_heads, vocab;
	unsigned max_pos;
	int tied;
};

/*
 * tiny: 8 layers of a miniature Llama (inter/hidden = 2.5, GQA 2:1, head_dim
 * 64) sized so bf16 is about 50 MiB: 8 * 2,753,536 layer params + 2 * 4096 *
 * 512 embedding/lm_head params + 512 = 26,223,104 params = 52.4 MB.
 */
static const struct preset presets[] = {
	{ "tiny", 512, 1280, 8, 8, 4, 4096, 8192, 0 },
	/* Llama-3.2-1B */
	{ "1b", 2048, 8192, 16, 32, 8, 128256, 131072, 1 },
	/* Llama-3.1-8B */
	{ "8b", 4096, 14336, 32, 32, 8, 128256, 131072, 0 },
	/* Llama-3.1-70B */
	{ "70b", 8192, 28672, 80, 64, 8, 128256, 131072, 0 },
};

/* DT_FP8 is the DeepSeek-V3 layout: linear weights F8_E4M3 with an F32
 * weight_scale_inv per 128x128 block, everything else BF16. */
enum dtype { DT_BF16, DT_F16, DT_F32, DT_FP8 };

static const struct {
	const char *arg, *st, *torch;
	unsigned size;
} dtypes[] = {
	[DT_BF16] = { "bf16", "BF16", "bfloat16", 2 },
	[DT_F16] = { "f16", "F16", "float16", 2 },
	[DT_F32] = { "f32", "F32", "float32", 4 },
	[DT_FP8] = { "fp8", "F8_E4M3", "bfloat16", 1 },
};

/* FP8 block size (DeepSeek-V3 config.json: weight_block_size [128, 128]). */
#define FP8_BLOCK 128

/* What kind of values a tensor holds, which sets its statistics. */
enum kind {
	K_EMBED, K_NORM, K_FINAL_NORM, K_Q, K_K, K_V, K_O, K_GATE, K_UP,
	K_DOWN, K_LM_HEAD, K_ROUTER, K_SCALE
};

struct tensor {
	char name[64];
	enum kind kind;
	int layer;		/* -1 for non-layer tensors */
	uint64_t rows, cols;	/* a 1-D tensor has rows == 1, ndim == 1 */
	int ndim;		/* 3: [experts, rows, cols] stacked experts */
	uint64_t experts;	/* ndim 3 only */
	enum dtype dt;
	int mx;			/* MXFP4 experts: 1 the "_blocks", 2 the "_scales" */
	uint64_t bytes;
	unsigned shard;		/* 0-based */
	uint64_t offset;	/* of its data within the shard's data section */
};

struct plan {
	const struct preset *p;
	unsigned layers;
	enum dtype dt;
	uint64_t seed;
	int tied;
	unsigned moe;		/* experts per layer, 0: dense MLP */
	int fused;		/* experts stacked in 3-D tensors */
	int mxfp4;		/* stacked experts as MXFP4 _blocks/_scales (gpt-oss) */
	int mixtral;		/* Mixtral naming: block_sparse_moe.experts.E.w1/w2/w3 */
	/* --sparse: headers only, the data section a hole of the right size,
	 * so a 70b checkpoint for plans (which read headers alone) costs a
	 * few MB of disk and a second to write; its weights read as zeros */
	int sparse;
	struct tensor *t;
	size_t nt;
	unsigned nshards;
	uint64_t total_bytes;
};

static void add_tensor(struct plan *pl, const char *name, enum kind kind,
		       int layer, uint64_t rows, uint64_t cols, int ndim)
{
	struct tensor *t = &pl->t[pl->nt++];

	snprintf(t->name, sizeof(t->name), "%s", name);
	t->kind = kind;
	t->layer = layer;
	t->rows = rows;
	t->cols = cols;
	t->ndim = ndim;
	t->experts = 1;
	t->dt = pl->dt;
	/* FP8 checkpoints keep embeddings, norms, the output layer and the
	 * routers in BF16 and give each FP8 weight its block scales */
	if (pl->dt == DT_FP8 && (ndim != 2 || kind == K_EMBED || kind == K_LM_HEAD ||
				 kind == K_ROUTER))
		t->dt = DT_BF16;
	if (kind == K_SCALE)
		t->dt = DT_F32;
	/* Largest: 128256 * 8192 * 4 bytes, far from overflowing 64 bits. */
	t->bytes = rows * cols * dtypes[t->dt].size;
	if (t->dt == DT_FP8) {
		char sname[64];

		snprintf(sname, sizeof(sname), "%s_scale_inv", name);
		add_tensor(pl, sname, K_SCALE, layer, (rows + FP8_BLOCK - 1) / FP8_BLOCK,
			   (cols + FP8_BLOCK - 1) / FP8_BLOCK, 2);
	}
}

/* Stacked experts: [experts, rows, cols]. */
static void add_stacked(struct plan *pl, const char *name, enum kind kind, int layer,
			uint64_t experts, uint64_t rows, uint64_t cols)
{
	size_t at = pl->nt;

	add_tensor(pl, name, kind, layer, rows, cols, 2);
	struct tensor *t = &pl->t[at];

	t->ndim = 3;
	t->experts = experts;
	t->bytes *= experts;
}

/* The experts of one projection of layer l ("mlp.gate_proj.weight" becomes
 * "mlp.experts.E.gate_proj.weight", DeepSeek/Qwen-MoE naming, or one
 * stacked "mlp.experts.gate_proj.weight"), and the router before the
 * first projection. */
static void add_experts(struct plan *pl, unsigned l, enum kind kind, const char *suffix,
			uint64_t einter)
{
	const char *proj = suffix + strlen("mlp.");
	uint64_t h = pl->p->hidden;
	uint64_t rows = kind == K_DOWN ? h : einter, cols = kind == K_DOWN ? einter : h;
	char name[64];

	if (pl->mixtral) {
		/* MixtralForCausalLM: w1 the gate, w2 the down, w3 the up
		 * projection of each expert, after the router */
		const char *w = kind == K_GATE ? "w1" : kind == K_DOWN ? "w2" : "w3";

		if (kind == K_GATE) {
			snprintf(name, sizeof(name), "model.layers.%u.block_sparse_moe.gate.weight", l);
			add_tensor(pl, name, K_ROUTER, (int)l, pl->moe, h, 2);
		}
		for (unsigned e = 0; e < pl->moe; e++) {
			/* layers and experts below 65536 keep the name within 64 bytes */
			snprintf(name, sizeof(name), "model.layers.%hu.block_sparse_moe.experts.%hu.%s.weight",
				 (unsigned short)l, (unsigned short)e, w);
			add_tensor(pl, name, kind, (int)l, rows, cols, 2);
		}
		return;
	}
	if (kind == K_GATE) {
		snprintf(name, sizeof(name), "model.layers.%u.mlp.gate.weight", l);
		add_tensor(pl, name, K_ROUTER, (int)l, pl->moe, h, 2);
	}
	if (pl->mxfp4) {
		/* gpt-oss: "P_blocks" U8 [E, rows, cols/32, 16], "P_scales" U8
		 * [E, rows, cols/32]; P is the projection without ".weight" */
		size_t at = pl->nt;
		int plen = (int)(strlen(proj) - strlen(".weight"));

		snprintf(name, sizeof(name), "model.layers.%u.mlp.experts.%.*s_blocks", l, plen, proj);
		add_stacked(pl, name, kind, (int)l, pl->moe, rows, cols);
		pl->t[at].mx = 1;
		pl->t[at].bytes = pl->moe * rows * cols / 2;
		snprintf(name, sizeof(name), "model.layers.%u.mlp.experts.%.*s_scales", l, plen, proj);
		add_stacked(pl, name, kind, (int)l, pl->moe, rows, cols);
		pl->t[at + 1].mx = 2;
		pl->t[at + 1].bytes = pl->moe * rows * cols / 32;
		return;
	}
	if (pl->fused) {
		snprintf(name, sizeof(name), "model.layers.%u.mlp.experts.%s", l, proj);
		add_stacked(pl, name, kind, (int)l, pl->moe, rows, cols);
		return;
	}
	for (unsigned e = 0; e < pl->moe; e++) {
		snprintf(name, sizeof(name), "model.layers.%u.mlp.experts.%u.%s", l, e, proj);
		add_tensor(pl, name, kind, (int)l, rows, cols, 2);
	}
}

static int build_plan(struct plan *pl)
{
	const struct preset *p = pl->p;
	uint64_t h = p->hidden, hd = p->hidden / p->heads;
	uint64_t qd = p->heads * hd, kvd = p->kv_heads * hd;
	static const struct {
		const char *suffix;
		enum kind kind;
	} per_layer[] = {
		{ "input_layernorm.weight", K_NORM },
		{ "self_attn.q_proj.weight", K_Q },
		{ "self_attn.k_proj.weight", K_K },
		{ "self_attn.v_proj.weight", K_V },
		{ "self_attn.o_proj.weight", K_O },
		{ "post_attention_layernorm.weight", K_NORM },
		{ "mlp.gate_proj.weight", K_GATE },
		{ "mlp.up_proj.weight", K_UP },
		{ "mlp.down_proj.weight", K_DOWN },
	};
	/* each weight may bring a scale tensor */
	size_t n = 2 * (3 + (size_t)pl->layers * (10 + 3 * (size_t)pl->moe));
	/* experts are narrower than the dense MLP, as in DeepSeek/Qwen MoE */
	uint64_t einter = (p->inter / 4 + 63) / 64 * 64;
	char name[64];

	pl->t = calloc(n, sizeof(*pl->t));
	if (!pl->t)
		return -1;
	add_tensor(pl, "model.embed_tokens.weight", K_EMBED, -1, p->vocab, h, 2);
	for (unsigned l = 0; l < pl->layers; l++) {
		for (size_t i = 0; i < 9; i++) {
			uint64_t rows = 1, cols = h;
			int ndim = 2;

			if (pl->moe && (per_layer[i].kind == K_GATE || per_layer[i].kind == K_UP ||
					per_layer[i].kind == K_DOWN)) {
				add_experts(pl, l, per_layer[i].kind, per_layer[i].suffix, einter);
				continue;
			}
			switch (per_layer[i].kind) {
			case K_NORM: ndim = 1; break;
			case K_Q: rows = qd; break;
			case K_K: case K_V: rows = kvd; break;
			case K_O: rows = h; cols = qd; break;
			case K_GATE: case K_UP: rows = p->inter; break;
			case K_DOWN: rows = h; cols = p->inter; break;
			default: break;
			}
			snprintf(name, sizeof(name), "model.layers.%u.%s", l,
				 per_layer[i].suffix);
			add_tensor(pl, name, per_layer[i].kind, (int)l, rows,
				   cols, ndim);
		}
	}
	add_tensor(pl, "model.norm.weight", K_FINAL_NORM, -1, 1, h, 1);
	if (!pl->tied)
		add_tensor(pl, "lm_head.weight", K_LM_HEAD, -1, p->vocab, h, 2);
	return 0;
}

/* Greedy fill as transformers' shard_checkpoint does: a tensor that would
 * overflow the current shard opens a new one; a tensor larger than the limit
 * sits alone in its own shard. */
static void assign_shards(struct plan *pl, uint64_t limit)
{
	uint64_t cur = 0;
	unsigned shard = 0;

	pl->total_bytes = 0;
	for (size_t i = 0; i < pl->nt; i++) {
		struct tensor *t = &pl->t[i];

		if (cur > 0 && (t->bytes > limit || cur > limit - t->bytes)) {
			shard++;
			cur = 0;
		}
		t->shard = shard;
		t->offset = cur;
		cur += t->bytes;
		pl->total_bytes += t->bytes;
	}
	pl->nshards = shard + 1;
}

/* ------------------------------------------------------------------ PRNG */

/* splitmix64 (Steele, Lea, Flood 2014): used to expand seeds. */
static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* xoshiro256** (Blackman & Vigna 2018): fast, 256-bit state, good enough
 * statistically that its 16-bit slices can index quantile tables. */
struct rng {
	uint64_t s[4];
};

static inline uint64_t rotl64(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl64(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl64(s[3], 45);
	return out;
}

/* Uniform in (0, 1): never 0, so log() is safe. */
static inline double rng_unit(struct rng *r)
{
	return ((double)(rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static uint64_t fnv1a64(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

static void rng_seed_tensor(struct rng *r, uint64_t seed, const char *name)
{
	uint64_t sm = seed ^ rotl64(fnv1a64(name), 17);

	/* Two rounds decorrelate seeds that differ in few bits. */
	sm = splitmix64(&sm) ^ seed;
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&sm);
}

/* ------------------------------------------------------------------ tables */

/*
 * Inverse-CDF tables with 65536 entries turn 16 random bits into one sample
 * with a single load, which is what makes ~150M+ values/s possible.  Entry i
 * is the quantile at p = (i + 0.5) / 65536; the most extreme entries reach
 * the 1 - 7.6e-6 quantile, ~11 standard deviations for the t table, which is
 * where the tails of real weight matrices live.  Both tables are rescaled to
 * exactly zero mean and unit variance as sampled.
 */
#define QT_BITS 16
#define QT_SIZE (1u << QT_BITS)
#define QT_MASK (QT_SIZE - 1)

static float t5_table[QT_SIZE];	/* Student-t, 5 degrees of freedom */
static float norm_table[QT_SIZE];	/* standard normal */

/*
 * Student-t with nu = 5: with theta = atan(t / sqrt(5)), Abramowitz & Stegun
 * 26.7.3 gives F(t) = 1/2 + (theta + sin cos (1 + 2/3 cos^2)) / pi, which is
 * monotone in theta, so bisection on theta inverts it.
 */
static double t5_cdf_theta(double th)
{
	double s = sin(th), c = cos(th);

	return 0.5 + (th + s * c * (1.0 + (2.0 / 3.0) * c * c)) / M_PI;
}

static double t5_quantile(double p)
{
	double lo = -M_PI / 2, hi = M_PI / 2;

	for (int i = 0; i < 52; i++) {
		double mid = 0.5 * (lo + hi);

		if (t5_cdf_theta(mid) < p)
			lo = mid;
		else
			hi = mid;
	}
	return sqrt(5.0) * tan(0.5 * (lo + hi));
}

static double norm_quantile(double p)
{
	double lo = -12.0, hi = 12.0;

	for (int i = 0; i < 52; i++) {
		double mid = 0.5 * (lo + hi);

		if (0.5 * erfc(-mid / M_SQRT2) < p)
			lo = mid;
		else
			hi = mid;
	}
	return 0.5 * (lo + hi);
}

static void standardize(float *tab, const double *v)
{
	double mean = 0, var = 0;

	for (unsigned i = 0; i < QT_SIZE; i++)
		mean += v[i];
	mean /= QT_SIZE;
	for (unsigned i = 0; i < QT_SIZE; i++)
		var += (v[i] - mean) * (v[i] - mean);
	var /= QT_SIZE;
	for (unsigned i = 0; i < QT_SIZE; i++)
		tab[i] = (float)((v[i] - mean) / sqrt(var));
}

static int build_tables(void)
{
	double *v = malloc(QT_SIZE * sizeof(*v));

	if (!v)
		return -1;
	/* The distributions are symmetric: solve half, mirror the rest. */
	for (unsigned i = 0; i < QT_SIZE / 2; i++) {
		double q = t5_quantile((i + 0.5) / QT_SIZE);

		v[i] = q;
		v[QT_SIZE - 1 - i] = -q;
	}
	standardize(t5_table, v);
	for (unsigned i = 0; i < QT_SIZE / 2; i++) {
		double q = norm_quantile((i + 0.5) / QT_SIZE);

		v[i] = q;
		v[QT_SIZE - 1 - i] = -q;
	}
	standardize(norm_table, v);
	free(v);
	return 0;
}

static inline double rng_normal(struct rng *r)
{
	return norm_table[rng_next(r) & QT_MASK];
}

/* ------------------------------------------------------------------ dtypes */

static inline uint32_t f32_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

/* Round to nearest, ties to even, by adding just under half an ulp of the
 * target plus the parity bit; NaN is kept quiet rather than rounded into
 * infinity. */
static inline uint16_t f32_to_bf16(float f)
{
	uint32_t u = f32_bits(f);

	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

/* IEEE binary16, round to nearest even, with subnormals, overflow to inf. */
static inline uint16_t f32_to_f16(float f)
{
	uint32_t u = f32_bits(f);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
	int32_t exp = (int32_t)((u >> 23) & 0xff);
	uint32_t mant = u & 0x7fffff;
	int32_t e = exp - 127 + 15;
	uint32_t a = u & 0x7fffffffu;

	/* Fast path, almost every weight: the result is a normal half.  From
	 * 2^-14 up to (not including) 65520, the midpoint between 65504 and
	 * what would be 65536, rounding the mantissa and rebiasing the
	 * exponent cannot leave the normal range. */
	if (a >= 0x38800000u && a < 0x477ff000u)
		return sign | (uint16_t)(((a + 0xfffu + ((a >> 13) & 1)) >> 13) -
					 ((127 - 15) << 10));
	if (exp == 0xff)
		return sign | 0x7c00 | (mant ? 0x200 | (mant >> 13) : 0);
	if (e >= 31)
		return sign | 0x7c00;
	if (e <= 0) {
		/* Subnormal in half: the value in units of 2^-24 is
		 * (mant | implicit bit) >> (14 - e), rounded. */
		uint32_t m = mant | 0x800000, shift = (uint32_t)(14 - e), r, rem,
			 half;

		if (exp == 0 || shift > 24)
			return sign;
		r = m >> shift;
		rem = m & ((1u << shift) - 1);
		half = 1u << (shift - 1);
		if (rem > half || (rem == half && (r & 1)))
			r++;
		return sign | (uint16_t)r;
	}
	{
		/* A carry out of the mantissa correctly bumps the exponent,
		 * up to infinity. */
		uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
		uint32_t rem = mant & 0x1fff;

		if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
			h++;
		return sign | (uint16_t)h;
	}
}

static void put_le16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void encode_row(unsigned char *dst, const float *src, size_t n,
		       enum dtype dt)
{
	switch (dt) {
	case DT_BF16:
		for (size_t i = 0; i < n; i++)
			put_le16(dst + 2 * i, f32_to_bf16(src[i]));
		break;
	case DT_F16:
		for (size_t i = 0; i < n; i++)
			put_le16(dst + 2 * i, f32_to_f16(src[i]));
		break;
	case DT_F32:
		for (size_t i = 0; i < n; i++)
			put_le32(dst + 4 * i, f32_bits(src[i]));
		break;
	case DT_FP8:
		/* FP8 weights are written block row by block row
		 * (write_fp8_tensor), never through here */
		abort();
	}
}

/* ------------------------------------------------------------------ output */

struct out {
	int fd;
	const char *path;
	unsigned char *buf;
	size_t len;
	int err;		/* errno of the first failure */
};

static int out_flush(struct out *o)
{
	size_t done = 0;

	while (done < o->len && !o->err) {
		ssize_t n = write(o->fd, o->buf + done, o->len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			o->err = errno;
		else if (n == 0)
			o->err = ENOSPC;
		else
			done += (size_t)n;
	}
	o->len = 0;
	return o->err ? -1 : 0;
}

/* Room for n more bytes; rows never exceed the buffer (see main). */
static unsigned char *out_reserve(struct out *o, size_t n)
{
	if (OUTBUF_SIZE - o->len < n && out_flush(o) < 0)
		return NULL;
	return o->buf + o->len;
}

/* ------------------------------------------------------------------ values */

/*
 * Statistics, modelled loosely on released Llama-2/3 weights:
 *
 * - Linear weights: the body is Student-t with 5 degrees of freedom
 *   (kurtosis 9, vs 3 for a Gaussian; published weight histograms of LLMs
 *   are markedly leptokurtic).  The tensor's base std is c / sqrt(in) for a
 *   per-projection c (q/k larger than v/o, as in trained attention), kept
 *   within 0.007..0.035 so that, with the outliers below, whole tensors land
 *   at std 0.01..0.05, the range seen in Llama checkpoints.
 * - Per output row, a log-normal scale (sigma 0.3, mean-square 1), the row
 *   spread that makes per-channel scales worth having.
 * - Hot input channels: ~0.5% of input columns are scaled 3-10x for every
 *   row, the activation-outlier channels of LLM.int8()/AWQ that show up as
 *   large columns in the following weights.
 * - Salient weights: ~0.1% of weights, at geometrically distributed
 *   positions, replaced by +-(10..30) x the row's std: the isolated
 *   outliers that outlier-aware schemes (AdpQ, CLAQ) must keep.
 * - Norm weights: 1 + N(0, 0.05), a quarter of them shifted by +-0.1..0.4,
 *   with a few channels at 2-4x, since trained RMSNorm gains drift from 1
 *   and carry the outlier dimensions; the final norm sits higher.
 * - Embeddings: Gaussian, std 0.02 with a mild row spread, no outliers.
 */
#define ROW_SIGMA 0.3
#define HOT_FRACTION 0.005
#define SALIENT_MEAN_GAP 1000.0

struct gen {
	struct rng r;
	const float *table;
	float *colscale;	/* cols entries: base std x hot-channel factor */
	double std;		/* body std before row and column factors */
	double row_sigma, row_norm;
	double salient_gap;	/* 0: no salient weights */
	uint64_t next_salient;	/* element index within the tensor */
	uint64_t pos;		/* elements generated so far */
};

static double base_std(enum kind k, uint64_t in)
{
	double c;

	switch (k) {
	case K_Q: c = 1.3; break;
	case K_K: c = 1.5; break;
	case K_V: c = 0.6; break;
	case K_O: c = 0.6; break;
	case K_GATE: c = 1.0; break;
	case K_UP: c = 0.9; break;
	case K_DOWN: c = 0.8; break;
	case K_LM_HEAD: c = 1.0; break;
	default: return 0.02;
	}
	c /= sqrt((double)in);
	return c < 0.007 ? 0.007 : c > 0.035 ? 0.035 : c;
}

static uint64_t salient_gap(struct gen *g)
{
	return 1 + (uint64_t)(-log(rng_unit(&g->r)) * g->salient_gap);
}

static void gen_init(struct gen *g, const struct tensor *t, uint64_t seed)
{
	rng_seed_tensor(&g->r, seed, t->name);
	g->pos = 0;
	g->table = norm_table;
	g->salient_gap = 0;
	g->row_sigma = 0;
	g->std = 0.02;
	for (uint64_t j = 0; j < t->cols; j++)
		g->colscale[j] = 0.02f;
	if (t->kind == K_EMBED) {
		g->row_sigma = 0.1;
	} else if (t->kind != K_NORM && t->kind != K_FINAL_NORM) {
		double std = base_std(t->kind, t->cols);
		uint64_t nhot = (uint64_t)llround((double)t->cols * HOT_FRACTION);

		g->std = std;
		g->table = t5_table;
		g->row_sigma = ROW_SIGMA;
		g->salient_gap = SALIENT_MEAN_GAP;
		for (uint64_t j = 0; j < t->cols; j++)
			g->colscale[j] = (float)std;
		if (nhot == 0)
			nhot = 1;
		for (uint64_t i = 0; i < nhot; i++) {
			uint64_t j = rng_next(&g->r) % t->cols;

			g->colscale[j] = (float)(std * (3.0 + 7.0 * rng_unit(&g->r)));
		}
		g->next_salient = salient_gap(g) - 1;
	}
	/* E[exp(sigma Z)^2] = exp(2 sigma^2): divide so the row scale has
	 * mean square 1 and the tensor keeps its base std. */
	g->row_norm = exp(-g->row_sigma * g->row_sigma);
}

static void gen_norm_row(struct gen *g, const struct tensor *t, float *row)
{
	double mean = 1.0;
	uint64_t nhot = t->cols / 200 + 1;

	if (t->kind == K_FINAL_NORM) {
		mean = 1.8;
	} else if ((rng_next(&g->r) & 3) == 0) {
		double shift = 0.1 + 0.3 * rng_unit(&g->r);

		mean += (rng_next(&g->r) & 1) ? shift : -shift;
	}
	for (uint64_t j = 0; j < t->cols; j++)
		row[j] = (float)(mean + 0.05 * rng_normal(&g->r));
	for (uint64_t i = 0; i < nhot; i++) {
		uint64_t j = rng_next(&g->r) % t->cols;

		row[j] *= (float)(2.0 + 2.0 * rng_unit(&g->r));
	}
}

static void gen_row(struct gen *g, const struct tensor *t, float *row)
{
	const float *tab = g->table, *cs = g->colscale;
	uint64_t n = t->cols, j = 0;
	float rs = 1.0f;

	if (g->row_sigma > 0)
		rs = (float)(exp(g->row_sigma * rng_normal(&g->r)) * g->row_norm);
	/* Four 16-bit table indices per 64-bit draw. */
	for (; j + 4 <= n; j += 4) {
		uint64_t x = rng_next(&g->r);

		row[j] = tab[x & QT_MASK] * cs[j] * rs;
		row[j + 1] = tab[(x >> 16) & QT_MASK] * cs[j + 1] * rs;
		row[j + 2] = tab[(x >> 32) & QT_MASK] * cs[j + 2] * rs;
		row[j + 3] = tab[x >> 48] * cs[j + 3] * rs;
	}
	for (; j < n; j++)
		row[j] = tab[rng_next(&g->r) & QT_MASK] * cs[j] * rs;
	if (g->salient_gap > 0) {
		double row_std = (double)rs * g->std;

		while (g->next_salient < g->pos + n) {
			uint64_t k = g->next_salient - g->pos;
			double mag = (10.0 + 20.0 * rng_unit(&g->r)) * row_std;

			row[k] = (float)((rng_next(&g->r) & 1) ? mag : -mag);
			g->next_salient += salient_gap(g);
		}
	}
	g->pos += n;
}

/* f32 to OCP E4M3 ("fn": max 448, no infinities), round to nearest even,
 * saturating: the grid at |x| in [2^e, 2^(e+1)) has step 2^(e-3), and
 * below 2^-6 the subnormal step 2^-9. */
static uint8_t f32_to_e4m3(float f)
{
	uint8_t sign = f < 0 ? 0x80 : 0;
	double a = fabs((double)f);
	int e;

	if (!(a == a))
		return 0x7f;
	if (a >= 448.0)
		return sign | 0x7e;
	frexp(a, &e);		/* a = m * 2^e, m in [0.5, 1) */
	e -= 1;			/* a in [2^e, 2^(e+1)) */
	if (e < -6)
		e = -6;
	double q = nearbyint(ldexp(a, 3 - e));	/* ties to even (default mode) */
	if (q == 0)
		return sign;
	if (q >= 16) {		/* rounded up into the next binade */
		q /= 2;
		e++;
	}
	if (q < 8)		/* subnormal: exponent field 0 */
		return sign | (uint8_t)q;
	return sign | (uint8_t)((e + 7) << 3) | (uint8_t)(q - 8);
}

static void die_oom(void);

/* The block scales of the last FP8 weight written, for its
 * weight_scale_inv tensor that follows it. */
static float *fp8_stash;
static size_t fp8_stash_len;

/* An FP8 weight: 128 rows at a time, each 128x128 block scaled so its
 * largest magnitude maps to 448 (DeepSeek-V3's per-block quantization). */
static int write_fp8_tensor(struct out *o, const struct tensor *t, uint64_t seed,
			    struct gen *g, float *block)
{
	uint64_t scols = (t->cols + FP8_BLOCK - 1) / FP8_BLOCK;
	uint64_t srows = (t->rows + FP8_BLOCK - 1) / FP8_BLOCK;

	free(fp8_stash);
	fp8_stash_len = (size_t)(srows * scols);
	fp8_stash = malloc(fp8_stash_len * sizeof(*fp8_stash));
	if (!fp8_stash)
		die_oom();
	gen_init(g, t, seed);
	for (uint64_t br = 0; br < srows; br++) {
		uint64_t r0 = br * FP8_BLOCK;
		uint64_t nr = t->rows - r0 < FP8_BLOCK ? t->rows - r0 : FP8_BLOCK;

		for (uint64_t r = 0; r < nr; r++)
			gen_row(g, t, block + r * t->cols);
		for (uint64_t bc = 0; bc < scols; bc++) {
			uint64_t c0 = bc * FP8_BLOCK;
			uint64_t nc = t->cols - c0 < FP8_BLOCK ? t->cols - c0 : FP8_BLOCK;
			float amax = 0;

			for (uint64_t r = 0; r < nr; r++)
				for (uint64_t c = c0; c < c0 + nc; c++)
					if (fabsf(block[r * t->cols + c]) > amax)
						amax = fabsf(block[r * t->cols + c]);
			fp8_stash[br * scols + bc] = amax > 0 ? amax / 448.0f : 1.0f;
		}
		for (uint64_t r = 0; r < nr; r++) {
			unsigned char *dst = out_reserve(o, (size_t)t->cols);

			if (!dst)
				return -1;
			for (uint64_t c = 0; c < t->cols; c++)
				dst[c] = f32_to_e4m3(block[r * t->cols + c] /
						     fp8_stash[br * scols + c / FP8_BLOCK]);
			o->len += (size_t)t->cols;
		}
	}
	return 0;
}

/* e2m1 magnitudes (OCP MX v1.0): the code is the index, bit 3 the sign. */
static const float e2m1[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};

/* The E8M0 scales of the last MXFP4 blocks tensor, for its "_scales". */
static unsigned char *mx_stash;
static size_t mx_stash_len;

/* MXFP4 blocks: each 32 values get the power of two that brings their
 * largest magnitude within e2m1's 6 (OCP MX v1.0, section 6.3), then the
 * nearest e2m1 code of each value, two codes a byte, low nibble first. */
static int write_mxfp4_blocks(struct out *o, const struct tensor *t, uint64_t seed,
			      struct gen *g, float *row)
{
	uint64_t nrows = t->experts * t->rows, nblk = t->cols / 32;

	free(mx_stash);
	mx_stash_len = (size_t)(nrows * nblk);
	mx_stash = malloc(mx_stash_len);
	if (!mx_stash)
		die_oom();
	gen_init(g, t, seed);
	for (uint64_t r = 0; r < nrows; r++) {
		unsigned char *dst = out_reserve(o, (size_t)(t->cols / 2));

		if (!dst)
			return -1;
		gen_row(g, t, row);
		for (uint64_t b = 0; b < nblk; b++) {
			const float *v = row + 32 * b;
			float amax = 0;
			int e = -127;

			for (int i = 0; i < 32; i++)
				amax = fabsf(v[i]) > amax ? fabsf(v[i]) : amax;
			if (amax > 0)
				e = (int)ceil(log2(amax / 6.0));
			e = e < -127 ? -127 : e > 127 ? 127 : e;
			mx_stash[r * nblk + b] = (unsigned char)(e + 127);
			for (int i = 0; i < 32; i++) {
				float x = (float)ldexp(fabs(v[i]), -e);
				int best = 0;

				for (int k = 1; k < 8; k++)
					if (fabsf(x - e2m1[k]) < fabsf(x - e2m1[best]))
						best = k;
				unsigned char code = (unsigned char)(best | (v[i] < 0 ? 8 : 0));

				if (i % 2 == 0)
					dst[b * 16 + i / 2] = code;
				else
					dst[b * 16 + i / 2] |= (unsigned char)(code << 4);
			}
		}
		o->len += (size_t)(t->cols / 2);
	}
	return 0;
}

static int write_tensor_data(struct out *o, const struct tensor *t,
			     uint64_t seed, struct gen *g, float *row, float *block)
{
	enum dtype dt = t->dt;
	size_t row_bytes = (size_t)t->cols * dtypes[dt].size;

	if (t->mx == 1)
		return write_mxfp4_blocks(o, t, seed, g, row);
	if (t->mx == 2) {
		unsigned char *dst = out_reserve(o, mx_stash_len);

		if (!mx_stash || mx_stash_len != t->bytes || !dst) {
			fprintf(stderr, "mkckpt: %s does not follow its blocks\n", t->name);
			exit(EXIT_IO);
		}
		memcpy(dst, mx_stash, mx_stash_len);
		o->len += mx_stash_len;
		return 0;
	}
	if (dt == DT_FP8)
		return write_fp8_tensor(o, t, seed, g, block);
	if (t->kind == K_SCALE) {
		unsigned char *dst;

		if (!fp8_stash || fp8_stash_len != t->rows * t->cols) {
			fprintf(stderr, "mkckpt: %s does not follow its weight\n", t->name);
			exit(EXIT_IO);
		}
		for (size_t i = 0; i < fp8_stash_len; i++) {
			dst = out_reserve(o, 4);
			if (!dst)
				return -1;
			put_le32(dst, f32_bits(fp8_stash[i]));
			o->len += 4;
		}
		return 0;
	}
	gen_init(g, t, seed);
	for (uint64_t r = 0; r < t->rows * t->experts; r++) {
		unsigned char *dst;

		if (t->kind == K_NORM || t->kind == K_FINAL_NORM)
			gen_norm_row(g, t, row);
		else
			gen_row(g, t, row);
		dst = out_reserve(o, row_bytes);
		if (!dst)
			return -1;
		encode_row(dst, row, t->cols, dt);
		o->len += row_bytes;
	}
	return 0;
}

/* ------------------------------------------------------------------ files */

static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static void shard_name(char *buf, size_t n, const struct plan *pl, unsigned s)
{
	if (pl->nshards == 1)
		snprintf(buf, n, "model.safetensors");
	else
		snprintf(buf, n, "model-%05u-of-%05u.safetensors", s + 1,
			 pl->nshards);
}

static void die_io(const char *path, int err)
{
	fprintf(stderr, "mkckpt: '%s': %s\n", path, strerror(err));
	exit(EXIT_IO);
}

static void die_oom(void)
{
	fprintf(stderr, "mkckpt: out of memory\n");
	exit(EXIT_IO);
}

static void write_json(const char *dir, const char *name, json_t *j,
		       size_t flags)
{
	char *path = path_join(dir, name);
	FILE *f;

	if (!path)
		die_oom();
	f = fopen(path, "w");
	if (!f)
		die_io(path, errno);
	if (json_dumpf(j, f, flags) < 0 || fputc('\n', f) == EOF || ferror(f)) {
		int err = errno ? errno : EIO;

		fclose(f);
		die_io(path, err);
	}
	if (fclose(f) != 0)
		die_io(path, errno);
	free(path);
}

#define CHECK_JSON(x) do { if ((x) != 0) die_oom(); } while (0)

static json_t *tensor_header(const struct plan *pl, unsigned shard)
{
	json_t *h = json_object(), *meta = json_object();

	if (!h || !meta)
		die_oom();
	CHECK_JSON(json_object_set_new(meta, "format", json_string("pt")));
	CHECK_JSON(json_object_set_new(h, "__metadata__", meta));
	for (size_t i = 0; i < pl->nt; i++) {
		const struct tensor *t = &pl->t[i];
		json_t *e, *shape;

		if (t->shard != shard)
			continue;
		if (t->mx == 1)
			shape = json_pack("[IIII]", (json_int_t)t->experts, (json_int_t)t->rows,
					  (json_int_t)(t->cols / 32), (json_int_t)16);
		else if (t->mx == 2)
			shape = json_pack("[III]", (json_int_t)t->experts, (json_int_t)t->rows,
					  (json_int_t)(t->cols / 32));
		else if (t->ndim == 3)
			shape = json_pack("[III]", (json_int_t)t->experts, (json_int_t)t->rows,
					  (json_int_t)t->cols);
		else
			shape = t->ndim == 1 ?
				json_pack("[I]", (json_int_t)t->cols) :
				json_pack("[II]", (json_int_t)t->rows,
					  (json_int_t)t->cols);
		e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", t->mx ? "U8" : dtypes[t->dt].st,
			      "shape", shape, "data_offsets",
			      (json_int_t)t->offset,
			      (json_int_t)(t->offset + t->bytes));
		if (!e)
			die_oom();
		CHECK_JSON(json_object_set_new(h, t->name, e));
	}
	return h;
}

static void write_shard(const char *dir, const struct plan *pl,
			unsigned shard, struct out *o, struct gen *g,
			float *row, float *block)
{
	char name[64], *path, *hdr;
	json_t *h = tensor_header(pl, shard);
	size_t hlen, padded;

	shard_name(name, sizeof(name), pl, shard);
	path = path_join(dir, name);
	hdr = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!path || !hdr)
		die_oom();
	json_decref(h);
	/* Pad with spaces so the data section starts 8-byte aligned, which
	 * lets readers map f32 data in place. */
	hlen = strlen(hdr);
	padded = (hlen + 7) & ~(size_t)7;
	if (padded + 8 > OUTBUF_SIZE) {
		fprintf(stderr, "mkckpt: '%s': header too large\n", path);
		exit(EXIT_IO);
	}

	o->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (o->fd < 0)
		die_io(path, errno);
	o->path = path;
	o->len = 0;
	o->err = 0;
	put_le64(o->buf, padded);
	memcpy(o->buf + 8, hdr, hlen);
	memset(o->buf + 8 + hlen, ' ', padded - hlen);
	o->len = 8 + padded;
	free(hdr);

	uint64_t data_end = 0;
	for (size_t i = 0; i < pl->nt; i++) {
		if (pl->t[i].shard != shard)
			continue;
		if (pl->t[i].offset + pl->t[i].bytes > data_end)
			data_end = pl->t[i].offset + pl->t[i].bytes;
		if (!pl->sparse &&
		    write_tensor_data(o, &pl->t[i], pl->seed, g, row, block) < 0)
			die_io(path, o->err);
	}
	if (out_flush(o) < 0)
		die_io(path, o->err);
	if (pl->sparse && ftruncate(o->fd, (off_t)(8 + padded + data_end)) != 0)
		die_io(path, errno);
	/* close() can be where NFS or a quota reports the failed write. */
	if (close(o->fd) != 0)
		die_io(path, errno);
	free(path);
}

static void write_index(const char *dir, const struct plan *pl)
{
	json_t *root, *map = json_object();
	char name[64];

	if (!map)
		die_oom();
	for (size_t i = 0; i < pl->nt; i++) {
		shard_name(name, sizeof(name), pl, pl->t[i].shard);
		CHECK_JSON(json_object_set_new(map, pl->t[i].name,
					       json_string(name)));
	}
	root = json_pack("{s:{s:I}, s:o}", "metadata", "total_size",
			 (json_int_t)pl->total_bytes, "weight_map", map);
	if (!root)
		die_oom();
	/* transformers writes the index with indent=2, sort_keys=True. */
	write_json(dir, "model.safetensors.index.json", root,
		   JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(root);
}

static void write_config(const char *dir, const struct plan *pl)
{
	const struct preset *p = pl->p;
	json_t *c = json_pack(
		"{s:[s], s:b, s:f, s:i, s:i, s:s, s:i, s:s, s:i, s:f, s:i,"
		" s:b, s:s, s:i, s:i, s:i, s:i, s:i, s:f, s:n, s:f, s:b, s:s,"
		" s:b, s:i}",
		"architectures", "LlamaForCausalLM",
		"attention_bias", 0,
		"attention_dropout", 0.0,
		"bos_token_id", 1,
		"eos_token_id", 2,
		"hidden_act", "silu",
		"hidden_size", (int)p->hidden,
		"model_type", "llama",
		"head_dim", (int)(p->hidden / p->heads),
		"initializer_range", 0.02,
		"intermediate_size", (int)p->inter,
		"mlp_bias", 0,
		"torch_dtype", dtypes[pl->dt].torch,
		"max_position_embeddings", (int)p->max_pos,
		"num_attention_heads", (int)p->heads,
		"num_hidden_layers", (int)pl->layers,
		"num_key_value_heads", (int)p->kv_heads,
		"pretraining_tp", 1,
		"rms_norm_eps", 1e-5,
		"rope_scaling",
		"rope_theta", 500000.0,
		"tie_word_embeddings", pl->tied,
		"transformers_version", "4.45.0",
		"use_cache", 1,
		"vocab_size", (int)p->vocab);

	if (!c)
		die_oom();
	if (pl->mixtral) {
		/* MixtralForCausalLM: intermediate_size is each expert's */
		json_t *arch = json_pack("[s]", "MixtralForCausalLM");

		if (!arch)
			die_oom();
		CHECK_JSON(json_object_set_new(c, "architectures", arch));
		CHECK_JSON(json_object_set_new(c, "model_type", json_string("mixtral")));
		CHECK_JSON(json_object_set_new(c, "num_local_experts", json_integer(pl->moe)));
		CHECK_JSON(json_object_set_new(c, "num_experts_per_tok", json_integer(2)));
		CHECK_JSON(json_object_set_new(c, "intermediate_size",
					       json_integer((json_int_t)((p->inter / 4 + 63) / 64 * 64))));
	} else if (pl->moe) {
		/* DeepSeek-V3 / Qwen-MoE spellings */
		CHECK_JSON(json_object_set_new(c, "n_routed_experts", json_integer(pl->moe)));
		CHECK_JSON(json_object_set_new(c, "num_experts_per_tok", json_integer(2)));
		CHECK_JSON(json_object_set_new(c, "moe_intermediate_size",
					       json_integer((json_int_t)((p->inter / 4 + 63) / 64 * 64))));
	}
	if (pl->dt == DT_FP8) {
		/* DeepSeek-V3's config.json */
		json_t *q = json_pack("{s:s, s:s, s:s, s:[i,i]}", "activation_scheme", "dynamic",
				      "fmt", "e4m3", "quant_method", "fp8",
				      "weight_block_size", FP8_BLOCK, FP8_BLOCK);
		if (!q)
			die_oom();
		CHECK_JSON(json_object_set_new(c, "quantization_config", q));
	}
	/* Precision 10 prints 1e-05 and 500000.0 as transformers does, not
	 * the 17-digit round-trip forms. */
	write_json(dir, "config.json", c,
		   JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
	json_decref(c);
}

/* ------------------------------------------------------------- tokenizer */

/*
 * A small byte-level BPE tokenizer in Hugging Face tokenizers' format
 * (GPT-2 style: every byte is a token, spelled through GPT-2's
 * bytes-to-unicode table so all tokens are printable), sized to the
 * preset's vocabulary, so exported checkpoints load in llama.cpp with a
 * real vocabulary and tokenizer round trips can be tested.
 *
 * ids 0..2: <unk>, <s>, </s> (special; config.json's bos 1 and eos 2);
 * ids 3..258: byte b at 3 + b;
 * ids 259..: merges, in rank order: first every pair (x, y) of the 63
 * characters "Ġ" (space), a-z, A-Z, 0-9, then (pair, character) for every
 * pair in the same order, until the vocabulary is full.  Each merged
 * token arises from exactly one merge.  A vocabulary below 259 gets no
 * tokenizer.
 */
#define TOK_SPECIALS 3
#define TOK_FIRST_MERGE (TOK_SPECIALS + 256)

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves,
 * the other 68 to U+0100 upwards in byte order; as UTF-8 into out[3]. */
static void byte_token(unsigned b, char out[3])
{
	unsigned cp;

	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) {
		cp = b;
	} else {
		unsigned n = 0;

		for (unsigned k = 0; k < b; k++)
			if (!((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || k >= 174))
				n++;
		cp = 256 + n;
	}
	if (cp < 0x80) {
		out[0] = (char)cp;
		out[1] = 0;
	} else {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		out[2] = 0;
	}
}

static void write_tokenizer(const char *dir, const struct plan *pl)
{
	static const char alpha[] = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	const unsigned na = sizeof(alpha) - 1;
	uint64_t vocab = pl->p->vocab;
	char sym[64][3];
	json_t *v, *merges, *added, *root, *cfg, *map, *gen;

	if (vocab < TOK_FIRST_MERGE)
		return;
	for (unsigned i = 0; i < na; i++)
		byte_token((unsigned char)alpha[i], sym[i]);
	v = json_object();
	merges = json_array();
	added = json_array();
	if (!v || !merges || !added)
		die_oom();
	static const char *const specials[TOK_SPECIALS] = { "<unk>", "<s>", "</s>" };
	for (int i = 0; i < TOK_SPECIALS; i++) {
		json_object_set_new(v, specials[i], json_integer(i));
		json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}",
			"id", i, "content", specials[i], "single_word", 0, "lstrip", 0,
			"rstrip", 0, "normalized", 0, "special", 1));
	}
	for (unsigned b = 0; b < 256; b++) {
		char t[3];

		byte_token(b, t);
		json_object_set_new(v, t, json_integer(TOK_SPECIALS + b));
	}
	uint64_t id = TOK_FIRST_MERGE;
	/* level 2: sym x sym; level 3: (level-2 token) x sym */
	for (unsigned level = 2; level <= 3 && id < vocab; level++) {
		for (unsigned i = 0; i < na * na && id < vocab; i++) {
			for (unsigned j = 0; j < (level == 2 ? 1u : na) && id < vocab; j++) {
				/* each symbol is at most 2 bytes of UTF-8 */
				char left[8] = "", right[4] = "", m[16], tokn[16];

				if (level == 2) {
					strcpy(left, sym[i / na]);
					strcpy(right, sym[i % na]);
				} else {
					strcpy(left, sym[i / na]);
					strcat(left, sym[i % na]);
					strcpy(right, sym[j]);
				}
				strcpy(m, left);
				strcat(m, " ");
				strcat(m, right);
				strcpy(tokn, left);
				strcat(tokn, right);
				json_object_set_new(v, tokn, json_integer((json_int_t)id++));
				json_array_append_new(merges, json_string(m));
			}
		}
	}
	root = json_pack("{s:s, s:o, s:n, s:{s:s,s:b,s:b,s:b}, s:n,"
			 " s:{s:s,s:b,s:b,s:b},"
			 " s:{s:s,s:n,s:n,s:n,s:n,s:b,s:b,s:b,s:o,s:o}}",
			 "version", "1.0",
			 "added_tokens", added,
			 "normalizer",
			 "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0,
			 "trim_offsets", 1, "use_regex", 1,
			 "post_processor",
			 "decoder", "type", "ByteLevel", "add_prefix_space", 1,
			 "trim_offsets", 1, "use_regex", 1,
			 "model", "type", "BPE", "dropout", "unk_token",
			 "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0,
			 "byte_fallback", 0, "ignore_merges", 0, "vocab", v, "merges", merges);
	if (!root)
		die_oom();
	write_json(dir, "tokenizer.json", root, JSON_INDENT(2));
	json_decref(root);

	cfg = json_pack("{s:b, s:b, s:s, s:s, s:s, s:i, s:s, s:s}",
			"add_bos_token", 1, "add_eos_token", 0,
			"bos_token", "<s>", "eos_token", "</s>", "unk_token", "<unk>",
			"model_max_length", (int)pl->p->max_pos,
			"tokenizer_class", "PreTrainedTokenizerFast",
			"chat_template",
			"{% for m in messages %}{{ '<s>' + m['role'] + ': ' + m['content'] + '</s>' }}{% endfor %}");
	map = json_pack("{s:s, s:s, s:s}", "bos_token", "<s>", "eos_token", "</s>",
			"unk_token", "<unk>");
	gen = json_pack("{s:i, s:i, s:s}", "bos_token_id", 1, "eos_token_id", 2,
			"transformers_version", "4.45.0");
	if (!cfg || !map || !gen)
		die_oom();
	write_json(dir, "tokenizer_config.json", cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
	write_json(dir, "special_tokens_map.json", map, JSON_INDENT(2) | JSON_SORT_KEYS);
	write_json(dir, "generation_config.json", gen, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(cfg);
	json_decref(map);
	json_decref(gen);
}

/* A stale file of the other layout would make the directory ambiguous to
 * loaders (an index next to a single file, or vice versa). */
static void remove_stale(const char *dir, const char *name)
{
	char *path = path_join(dir, name);

	if (!path)
		die_oom();
	if (unlink(path) != 0 && errno != ENOENT)
		die_io(path, errno);
	free(path);
}

/* ------------------------------------------------------------------ args */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mkckpt [--preset tiny|1b|8b|70b] [--layers N] "
		"[--dtype bf16|f16|f32|fp8]\n"
		"              [--moe E [--fused-experts [--mxfp4] | --mixtral]]\n"
		"              [--inter N]\n"
		"              [--shard-size SIZE] [--seed S] "
		"[--tie-embeddings] [--vocab N] [--sparse] -o DIR\n"
		"\n"
		"Write a synthetic Llama-family checkpoint (config.json, "
		"safetensors shards\n"
		"and index) in Hugging Face layout into DIR.\n"
		"\n"
		"  --preset P        tiny (~50 MB, default), 1b (Llama-3.2-1B), "
		"8b (Llama-3.1-8B),\n"
		"                    70b (Llama-3.1-70B)\n"
		"  --layers N        keep only layers 0..N-1\n"
		"  --dtype T         bf16 (default), f16, f32, or fp8 (DeepSeek-V3 layout:\n"
		"                    F8_E4M3 linear weights with F32 weight_scale_inv\n"
		"                    per 128x128 block, the rest BF16)\n"
		"  --moe E           E experts per layer instead of the dense MLP, plus a\n"
		"                    router mlp.gate.weight (mlp.experts.N.*_proj.weight)\n"
		"  --fused-experts   stack the experts in 3-D tensors [E, rows, cols]\n"
		"  --mxfp4           stacked experts as gpt-oss MXFP4: P_blocks U8\n"
		"                    [E, rows, cols/32, 16] and P_scales U8 (E8M0)\n"
		"  --mixtral         MixtralForCausalLM: experts as\n"
		"                    block_sparse_moe.experts.N.w1/w2/w3.weight, router\n"
		"                    block_sparse_moe.gate.weight\n"
		"  --inter N         override the preset's intermediate (MLP) size\n"
		"  --shard-size SIZE max bytes per shard, K/M/G suffixes are "
		"powers of 1024;\n"
		"                    0 (default): one file for tiny, 5GB "
		"shards otherwise\n"
		"  --seed S          PRNG seed (default 1)\n"
		"  --tie-embeddings  share embed_tokens with the output layer "
		"(no lm_head)\n"
		"  --vocab N         override the preset's vocabulary size\n"
		"  --sparse          headers only: the data is a hole of the right size\n"
		"                    (reads as zeros; for plans and header benchmarks)\n"
		"  -o, --output DIR  output directory, created if missing\n"
		"  -h, --help        show this help\n");
}

static void die_usage(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mkckpt: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\ntry 'mkckpt --help'\n");
	exit(EXIT_USAGE);
}

/* Unsigned decimal, no sign, no trailing junk. */
static int parse_u64(const char *s, uint64_t *v, const char **end)
{
	uint64_t x = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	*v = x;
	if (end)
		*end = s;
	else if (*s)
		return -1;
	return 0;
}

static int parse_size(const char *s, uint64_t *v)
{
	const char *end;
	unsigned shift = 0;

	if (parse_u64(s, v, &end) < 0)
		return -1;
	switch (*end) {
	case '\0': return 0;
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default: return -1;
	}
	if (end[1] != '\0' || *v > (UINT64_MAX >> shift))
		return -1;
	*v <<= shift;
	return 0;
}

static int mkdir_p(const char *dir)
{
	char *p = strdup(dir);
	struct stat st;

	if (!p)
		die_oom();
	for (char *c = p + 1; ; c++) {
		if (*c != '/' && *c != '\0')
			continue;
		char save = *c;

		*c = '\0';
		if (mkdir(p, 0755) != 0 && errno != EEXIST) {
			int err = errno;

			free(p);
			errno = err;
			return -1;
		}
		*c = save;
		if (save == '\0')
			break;
	}
	free(p);
	if (stat(dir, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "preset", required_argument, NULL, 'p' },
		{ "layers", required_argument, NULL, 'l' },
		{ "dtype", required_argument, NULL, 'd' },
		{ "shard-size", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, 'S' },
		{ "tie-embeddings", no_argument, NULL, 't' },
		{ "vocab", required_argument, NULL, 'v' },
		{ "moe", required_argument, NULL, 'm' },
		{ "fused-experts", no_argument, NULL, 'F' },
		{ "mxfp4", no_argument, NULL, 'X' },
		{ "mixtral", no_argument, NULL, 'M' },
		{ "inter", required_argument, NULL, 'I' },
		{ "sparse", no_argument, NULL, 'Z' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct plan pl = { .p = &presets[0], .dt = DT_BF16, .seed = 1 };
	const char *dir = NULL, *layers_arg = NULL;
	uint64_t shard_size = 0, maxcols = 0, vocab = 0, inter = 0;
	struct preset custom;
	int tie = 0, opt;
	struct out o = { .fd = -1 };
	struct gen g;
	float *row, *block;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'p': {
			size_t i, n = sizeof(presets) / sizeof(presets[0]);

			for (i = 0; i < n; i++)
				if (!strcmp(optarg, presets[i].name))
					break;
			if (i == n)
				die_usage("unknown preset '%s' (expected tiny, "
					  "1b, 8b or 70b)", optarg);
			pl.p = &presets[i];
			break;
		}
		case 'l':
			layers_arg = optarg;
			break;
		case 'd': {
			size_t i, n = sizeof(dtypes) / sizeof(dtypes[0]);

			for (i = 0; i < n; i++)
				if (!strcmp(optarg, dtypes[i].arg))
					break;
			if (i == n)
				die_usage("unknown dtype '%s' (expected bf16, "
					  "f16, f32 or fp8)", optarg);
			pl.dt = (enum dtype)i;
			break;
		}
		case 's':
			if (parse_size(optarg, &shard_size) < 0)
				die_usage("invalid shard size '%s'", optarg);
			break;
		case 'S':
			if (parse_u64(optarg, &pl.seed, NULL) < 0)
				die_usage("invalid seed '%s'", optarg);
			break;
		case 't':
			tie = 1;
			break;
		case 'v':
			/* a larger vocabulary makes one very large tensor
			 * (embed_tokens), as the memory benchmark needs */
			if (parse_u64(optarg, &vocab, NULL) < 0 || vocab < 1 ||
			    vocab > 4000000)
				die_usage("invalid vocabulary size '%s' (1..4000000)",
					  optarg);
			break;
		case 'm': {
			uint64_t e;

			if (parse_u64(optarg, &e, NULL) < 0 || e < 1 || e > 256)
				die_usage("invalid expert count '%s' (1..256)", optarg);
			pl.moe = (unsigned)e;
			break;
		}
		case 'F':
			pl.fused = 1;
			break;
		case 'X':
			pl.mxfp4 = 1;
			break;
		case 'M':
			pl.mixtral = 1;
			break;
		case 'I':
			/* rows that are no whole number of 256- or 32-blocks, for
			 * the GGUF export's type fallbacks */
			if (parse_u64(optarg, &inter, NULL) < 0 || inter < 1 || inter > 1000000)
				die_usage("invalid intermediate size '%s' (1..1000000)", optarg);
			break;
		case 'Z':
			pl.sparse = 1;
			break;
		case 'o':
			if (!*optarg)
				die_usage("empty output directory");
			dir = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			die_usage("option '%s' requires an argument",
				  argv[optind - 1]);
		default:
			/* For an unknown letter inside a cluster (-xq) optind
			 * may not have moved past it yet. */
			if (optopt)
				die_usage("unknown option '-%c'", optopt);
			die_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		die_usage("unexpected argument '%s'", argv[optind]);
	if (!dir)
		die_usage("missing output directory (-o DIR)");
	if (pl.fused && !pl.moe)
		die_usage("--fused-experts needs --moe E");
	if (pl.mixtral && (!pl.moe || pl.fused))
		die_usage("--mixtral needs --moe E and no --fused-experts");
	if (pl.mxfp4 && !pl.fused)
		die_usage("--mxfp4 needs --moe E --fused-experts");
	if (pl.fused && pl.dt == DT_FP8)
		die_usage("--fused-experts and --dtype fp8 do not combine (FP8 MoE "
			  "checkpoints store experts one by one)");

	if (vocab || inter) {
		custom = *pl.p;
		if (vocab)
			custom.vocab = (unsigned)vocab;
		if (inter)
			custom.inter = (unsigned)inter;
		pl.p = &custom;
	}
	pl.layers = pl.p->layers;
	if (layers_arg) {
		uint64_t n;

		if (parse_u64(layers_arg, &n, NULL) < 0 || n < 1 ||
		    n > pl.p->layers)
			die_usage("invalid layer count '%s' (preset %s has "
				  "1..%u)", layers_arg, pl.p->name,
				  pl.p->layers);
		pl.layers = (unsigned)n;
	}
	pl.tied = pl.p->tied || tie;
	if (shard_size == 0)
		shard_size = pl.p == &presets[0] ? UINT64_MAX : HF_DEFAULT_SHARD;

	if (build_tables() < 0 || build_plan(&pl) < 0)
		die_oom();
	assign_shards(&pl, shard_size);
	for (size_t i = 0; i < pl.nt; i++)
		if (pl.t[i].cols > maxcols)
			maxcols = pl.t[i].cols;
	/* One encoded row must fit the output buffer: 28672 f32 = 112 KiB. */
	row = malloc(maxcols * sizeof(*row));
	/* one block row of an FP8 weight */
	block = pl.dt == DT_FP8 ? malloc(maxcols * FP8_BLOCK * sizeof(*block)) : NULL;
	if (pl.dt == DT_FP8 && !block)
		die_oom();
	g.colscale = malloc(maxcols * sizeof(*g.colscale));
	o.buf = malloc(OUTBUF_SIZE);
	if (!row || !g.colscale || !o.buf)
		die_oom();

	if (mkdir_p(dir) != 0)
		die_io(dir, errno);
	write_config(dir, &pl);
	write_tokenizer(dir, &pl);
	for (unsigned s = 0; s < pl.nshards; s++)
		write_shard(dir, &pl, s, &o, &g, row, block);
	if (pl.nshards > 1) {
		write_index(dir, &pl);
		remove_stale(dir, "model.safetensors");
	} else {
		remove_stale(dir, "model.safetensors.index.json");
	}

	printf("mkckpt: wrote %s (preset %s, %u layers, %zu tensors, "
	       "%.2f GB in %u file(s))\n", dir, pl.p->name, pl.layers, pl.nt,
	       (double)pl.total_bytes / 1e9, pl.nshards);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "mkckpt: stdout: %s\n", strerror(errno));
		return EXIT_IO;
	}
	free(row);
	free(block);
	free(fp8_stash);
	free(mx_stash);
	free(g.colscale);
	free(o.buf);
	free(pl.t);
	return 0;
}
