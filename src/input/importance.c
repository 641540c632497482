/* importance.c - per-tensor importance vectors (mean squared input
 * activation of each input column) from three kinds of files:
 *
 *  - llama.cpp imatrix, GGUF form (llama-imatrix --output-format gguf): a
 *    GGUF v2/v3 file (magic "GGUF", u32 version, u64 tensor_count, u64
 *    kv_count, kv_count metadata pairs {string key, u32 type, value},
 *    tensor_count infos {string name, u32 n_dims, u64 ne[n_dims], u32
 *    ggml type, u64 offset}, then the data area at the next multiple of
 *    general.alignment (default 32) with each tensor at data + offset).  A
 *    weight W has "W.in_sum2" f32 [cols, nmat] (sum over tokens of x_j^2)
 *    and "W.counts" f32 [1, nmat] (tokens seen); importance = in_sum2 /
 *    counts.  An expert-stacked entry (nmat > 1) is merged over its
 *    experts: sum of in_sum2 over sum of counts, column by column.
 *  - llama.cpp imatrix, legacy .dat form: i32 n_entries, then per entry i32
 *    name length, the name bytes, i32 ncall, i32 nval, nval f32 (already
 *    sums of squares scaled to ncall calls); importance = value / ncall.
 *    An optional trailer (i32 last_call, i32 length, dataset name) is
 *    ignored.  nval = cols * nmat is merged over the nmat experts like
 *    the GGUF form.
 *  - safetensors: NAME -> F32 with cols elements, already the mean squared
 *    activation (other entries, e.g. "NAME.hessian", are ignored).
 *
 * llama.cpp names the Llama-family tensors differently; a lookup by the
 * Hugging Face name also tries the llama.cpp name (map_name(), and
 * map_expert_name() for MoE experts).  Every
 * count, length and offset read from a file is checked against the file
 * size before use: the reader is fed hostile input by the fuzzer.
 */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib.h"
#include "safetensors.h"
#include "util.h"

enum imp_kind { IMP_GGUF, IMP_DAT, IMP_ST };

struct imp_entry {
	char *name;           /* as stored in the file */
	uint64_t off;         /* f32 values (in_sum2 / values / the vector) */
	uint64_t nval;
	uint64_t counts_off;  /* GGUF: f32 counts; unused otherwise */
	uint64_t ncounts;
	float ncall;          /* .dat divisor */
};

struct qs_importance {
	char *path;
	int fd;
	enum imp_kind kind;
	uint64_t size;
	struct imp_entry *e;  /* sorted by name */
	size_t n;
};

/* GGUF tensor names are at most 64 bytes; imatrix names are the weight
 * names plus a suffix.  Anything longer is not a file we understand. */
#define NAME_MAX_LEN 4096u
#define GGUF_MAX_DEPTH 4
#define GGUF_TYPE_F32 0u

/* ---- a bounds-checked buffered reader over the file ---- */

struct rd {
	int fd;
	uint64_t size, pos;
	uint8_t buf[65536];
	uint64_t boff;
	size_t blen;
	const char *path;
	struct qs_diag *diag;
};

static int rd_short(struct rd *r, const char *what)
{
	return qs_diag_set(r->diag, -QS_EFORMAT, "'%s': %s extends past end of file",
			   qs_basename(r->path), what);
}

/* Copies n bytes at the current position into dst (dst may be NULL to
 * skip them). */
static int rd_get(struct rd *r, void *dst, uint64_t n, const char *what)
{
	if (n > r->size || r->pos > r->size - n)
		return rd_short(r, what);
	uint8_t *d = dst;
	while (n) {
		if (r->pos < r->boff || r->pos >= r->boff + r->blen) {
			uint64_t left = r->size - r->pos;
			size_t len = left < sizeof(r->buf) ? (size_t)left : sizeof(r->buf);
			if (!dst && n >= len) {  /* a long skip needs no I/O */
				r->pos += n;
				return 0;
			}
			int rc = qs_pread_full(r->fd, r->buf, len, r->pos);
			if (rc < 0)
				return qs_diag_set(r->diag, rc, "'%s': cannot read: %s",
						   qs_basename(r->path), qs_strerror(rc));
			r->boff = r->pos;
			r->blen = len;
		}
		size_t at = (size_t)(r->pos - r->boff);
		size_t take = r->blen - at;
		if (take > n)
			take = (size_t)n;
		if (d) {
			memcpy(d, r->buf + at, take);
			d += take;
		}
		r->pos += take;
		n -= take;
	}
	return 0;
}

static int rd_u32(struct rd *r, uint32_t *v, const char *what)
{
	uint8_t b[4];
	int rc = rd_get(r, b, 4, what);
	if (!rc)
		*v = qs_get_le32(b);
	return rc;
}

static int rd_u64(struct rd *r, uint64_t *v, const char *what)
{
	uint8_t b[8];
	int rc = rd_get(r, b, 8, what);
	if (!rc)
		*v = qs_get_le64(b);
	return rc;
}

/* A length-prefixed string, malloc'd and NUL-terminated (a NUL inside
 * makes it malformed: names are compared as C strings). */
static int rd_str(struct rd *r, uint64_t len, char **out, const char *what)
{
	if (len > NAME_MAX_LEN)
		return qs_diag_set(r->diag, -QS_EFORMAT, "'%s': %s is too long (%" PRIu64 " bytes)",
				   qs_basename(r->path), what, len);
	char *s = malloc((size_t)len + 1);
	if (!s)
		return qs_diag_set(r->diag, -ENOMEM, "out of memory");
	int rc = rd_get(r, s, len, what);
	if (rc) {
		free(s);
		return rc;
	}
	s[len] = '\0';
	if (strlen(s) != len) {
		free(s);
		return qs_diag_set(r->diag, -QS_EFORMAT, "'%s': %s holds a NUL byte",
				   qs_basename(r->path), what);
	}
	*out = s;
	return 0;
}

/* ---- the entry table ---- */

static int add_entry(struct qs_importance *imp, struct imp_entry *e, size_t *cap,
		     struct qs_diag *diag)
{
	if (imp->n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		struct imp_entry *ne = realloc(imp->e, nc * sizeof(*ne));
		if (!ne)
			return qs_diag_set(diag, -ENOMEM, "out of memory");
		imp->e = ne;
		*cap = nc;
	}
	imp->e[imp->n++] = *e;
	return 0;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct imp_entry *)a)->name, ((const struct imp_entry *)b)->name);
}

static int sort_entries(struct qs_importance *imp, struct qs_diag *diag)
{
	if (imp->n)
		qsort(imp->e, imp->n, sizeof(*imp->e), cmp_entry);
	for (size_t i = 1; i < imp->n; i++)
		if (strcmp(imp->e[i - 1].name, imp->e[i].name) == 0)
			return qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor '%s' appears twice",
					   qs_basename(imp->path), imp->e[i].name);
	return 0;
}

static const struct imp_entry *find(const struct qs_importance *imp, const char *name)
{
	size_t lo = 0, hi = imp->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(imp->e[mid].name, name);
		if (c == 0)
			return &imp->e[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* ---- legacy .dat ---- */

static int open_dat(struct qs_importance *imp, struct rd *r, struct qs_diag *diag)
{
	uint32_t n32;
	size_t cap = 0;
	int rc = rd_u32(r, &n32, "entry count");
	if (rc)
		return rc;
	/* each entry takes at least 12 bytes + a name + one value */
	if ((int32_t)n32 < 0 || (uint64_t)n32 > imp->size / 17)
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': implausible entry count %" PRId32,
				   qs_basename(imp->path), (int32_t)n32);
	for (uint32_t i = 0; i < n32; i++) {
		uint32_t len, ncall, nval;
		struct imp_entry e;
		memset(&e, 0, sizeof(e));
		if ((rc = rd_u32(r, &len, "entry name length")))
			return rc;
		if ((int32_t)len <= 0)
			return qs_diag_set(diag, -QS_EFORMAT, "'%s': entry %" PRIu32
					   " has a bad name length", qs_basename(imp->path), i);
		if ((rc = rd_str(r, len, &e.name, "entry name")))
			return rc;
		if ((rc = rd_u32(r, &ncall, "entry call count")) ||
		    (rc = rd_u32(r, &nval, "entry value count"))) {
			free(e.name);
			return rc;
		}
		if ((int32_t)ncall < 0 || (int32_t)nval <= 0) {
			rc = qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor '%s' has a bad count",
					 qs_basename(imp->path), e.name);
			free(e.name);
			return rc;
		}
		e.off = r->pos;
		e.nval = nval;
		e.ncall = (float)ncall;
		if ((rc = rd_get(r, NULL, 4 * (uint64_t)nval, "entry values")) ||
		    (rc = add_entry(imp, &e, &cap, diag))) {
			free(e.name);
			return rc;
		}
	}
	/* the optional trailer (last call, dataset name) carries nothing we use */
	return sort_entries(imp, diag);
}

/* ---- GGUF ---- */

static uint64_t gguf_scalar_size(uint32_t type)
{
	switch (type) {
	case 0: case 1: case 7: return 1;   /* u8, i8, bool */
	case 2: case 3: return 2;           /* u16, i16 */
	case 4: case 5: case 6: return 4;   /* u32, i32, f32 */
	case 10: case 11: case 12: return 8; /* u64, i64, f64 */
	default: return 0;
	}
}

static int gguf_skip_value(struct rd *r, uint32_t type, int depth)
{
	uint64_t sz = gguf_scalar_size(type);
	if (sz)
		return rd_get(r, NULL, sz, "metadata value");
	if (type == 8) {  /* string */
		uint64_t len;
		int rc = rd_u64(r, &len, "metadata string");
		return rc ? rc : rd_get(r, NULL, len, "metadata string");
	}
	if (type == 9 && depth < GGUF_MAX_DEPTH) {  /* array */
		uint32_t et;
		uint64_t n;
		int rc;
		if ((rc = rd_u32(r, &et, "metadata array")) || (rc = rd_u64(r, &n, "metadata array")))
			return rc;
		uint64_t esz = gguf_scalar_size(et);
		if (esz) {
			uint64_t total;
			if (!qs_mul_u64(n, esz, &total))
				return rd_short(r, "metadata array");
			return rd_get(r, NULL, total, "metadata array");
		}
		if (et != 8 && et != 9)
			goto bad;
		/* every element takes at least 8 bytes: bound n by the file */
		if (n > (r->size - r->pos) / 8)
			return rd_short(r, "metadata array");
		for (uint64_t i = 0; i < n; i++)
			if ((rc = gguf_skip_value(r, et, depth + 1)))
				return rc;
		return 0;
	}
bad:
	return qs_diag_set(r->diag, -QS_EFORMAT, "'%s': metadata value of unknown type %" PRIu32,
			   qs_basename(r->path), type);
}

struct gguf_tensor {
	char *name;
	uint64_t nelem, off;
	uint32_t type;
};

static bool ends_with(const char *s, const char *suf, size_t *base_len)
{
	size_t n = strlen(s), m = strlen(suf);
	if (n <= m || strcmp(s + n - m, suf) != 0)
		return false;
	*base_len = n - m;
	return true;
}

static int open_gguf(struct qs_importance *imp, struct rd *r, struct qs_diag *diag)
{
	const char *fn = qs_basename(imp->path);
	uint32_t magic, version;
	uint64_t ntensors, nkv, alignment = 32;
	int rc;

	if ((rc = rd_u32(r, &magic, "header")) || (rc = rd_u32(r, &version, "header")))
		return rc;
	if (version != 2 && version != 3)
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': unsupported GGUF version %" PRIu32,
				   fn, version);
	if ((rc = rd_u64(r, &ntensors, "header")) || (rc = rd_u64(r, &nkv, "header")))
		return rc;
	/* a KV pair takes >= 13 bytes and a tensor info >= 24 */
	if (nkv > imp->size / 13 || ntensors > imp->size / 24)
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': implausible GGUF counts", fn);
	for (uint64_t i = 0; i < nkv; i++) {
		uint64_t klen;
		uint32_t type;
		char *key = NULL;
		if ((rc = rd_u64(r, &klen, "metadata key")) ||
		    (rc = rd_str(r, klen, &key, "metadata key")))
			return rc;
		if ((rc = rd_u32(r, &type, "metadata type"))) {
			free(key);
			return rc;
		}
		if (strcmp(key, "general.alignment") == 0 && type == 4) {
			uint32_t a;
			free(key);
			if ((rc = rd_u32(r, &a, "metadata value")))
				return rc;
			if (a == 0 || (a & (a - 1)) != 0)
				return qs_diag_set(diag, -QS_EFORMAT,
						   "'%s': alignment %" PRIu32 " is not a power of two",
						   fn, a);
			alignment = a;
			continue;
		}
		free(key);
		if ((rc = gguf_skip_value(r, type, 0)))
			return rc;
	}

	struct gguf_tensor *t = calloc(ntensors ? (size_t)ntensors : 1, sizeof(*t));
	if (!t)
		return qs_diag_set(diag, -ENOMEM, "out of memory");
	uint64_t nt = 0;
	for (; nt < ntensors; nt++) {
		uint64_t nlen, ne = 1;
		uint32_t ndim;
		if ((rc = rd_u64(r, &nlen, "tensor name")) ||
		    (rc = rd_str(r, nlen, &t[nt].name, "tensor name")))
			goto out;
		if ((rc = rd_u32(r, &ndim, "tensor info")))
			goto out_name;
		if (ndim == 0 || ndim > 4) {
			rc = qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor '%s' has %" PRIu32
					 " dimensions", fn, t[nt].name, ndim);
			goto out_name;
		}
		for (uint32_t d = 0; d < ndim; d++) {
			uint64_t dim;
			if ((rc = rd_u64(r, &dim, "tensor info")))
				goto out_name;
			if (!qs_mul_u64(ne, dim, &ne) || ne > imp->size) {
				rc = qs_diag_set(diag, -QS_EFORMAT,
						 "'%s': tensor '%s' extends past end of file", fn,
						 t[nt].name);
				goto out_name;
			}
		}
		t[nt].nelem = ne;
		if ((rc = rd_u32(r, &t[nt].type, "tensor info")) ||
		    (rc = rd_u64(r, &t[nt].off, "tensor info")))
			goto out_name;
		continue;
out_name:
		nt++;
		goto out;
	}

	uint64_t data = r->pos;
	if (data % alignment)
		data += alignment - data % alignment;
	size_t cap = 0;
	for (uint64_t i = 0; i < nt; i++) {
		size_t blen;
		bool sums = ends_with(t[i].name, ".in_sum2", &blen);
		if (!sums && !ends_with(t[i].name, ".counts", &blen))
			continue;  /* not an imatrix tensor */
		uint64_t start, bytes, end;
		if (t[i].type != GGUF_TYPE_F32) {
			rc = qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor '%s' is not f32", fn,
					 t[i].name);
			goto out;
		}
		if (!qs_add_u64(data, t[i].off, &start) || !qs_mul_u64(t[i].nelem, 4, &bytes) ||
		    !qs_add_u64(start, bytes, &end) || end > imp->size) {
			rc = qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor '%s' extends past end of file",
					 fn, t[i].name);
			goto out;
		}
		if (!sums)
			continue;
		/* pair W.in_sum2 with W.counts */
		struct imp_entry e;
		memset(&e, 0, sizeof(e));
		e.off = start;
		e.nval = t[i].nelem;
		bool found = false;
		for (uint64_t j = 0; j < nt; j++) {
			size_t cl;
			if (ends_with(t[j].name, ".counts", &cl) && cl == blen &&
			    memcmp(t[j].name, t[i].name, blen) == 0) {
				uint64_t cs, cb, ce;
				if (t[j].type != GGUF_TYPE_F32 || !qs_add_u64(data, t[j].off, &cs) ||
				    !qs_mul_u64(t[j].nelem, 4, &cb) || !qs_add_u64(cs, cb, &ce) ||
				    ce > imp->size) {
					rc = qs_diag_set(diag, -QS_EFORMAT,
							 "'%s': tensor '%s' extends past end of file",
							 fn, t[j].name);
					goto out;
				}
				e.counts_off = cs;
				e.ncounts = t[j].nelem;
				found = true;
				break;
			}
		}
		if (!found) {
			rc = qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor '%s' has no counts", fn,
					 t[i].name);
			goto out;
		}
		e.name = strndup(t[i].name, blen);
		if (!e.name) {
			rc = qs_diag_set(diag, -ENOMEM, "out of memory");
			goto out;
		}
		if ((rc = add_entry(imp, &e, &cap, diag))) {
			free(e.name);
			goto out;
		}
	}
	rc = sort_entries(imp, diag);
out:
	for (uint64_t i = 0; i < nt; i++)
		free(t[i].name);
	free(t);
	return rc;
}

/* ---- safetensors ---- */

static int open_st(struct qs_importance *imp, struct qs_diag *diag)
{
	struct qs_st_header h;
	uint64_t fsize;
	int64_t mtime;
	size_t cap = 0;
	int rc = qs_st_read_file(imp->path, &h, &fsize, &mtime, diag);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < h.ntensors && !rc; i++) {
		struct imp_entry e;
		memset(&e, 0, sizeof(e));
		if (h.tensors[i].dtype != QS_DTYPE_F32)
			continue;  /* e.g. other statistics; a wrong dtype shows as "missing" */
		e.name = strdup(h.tensors[i].name);
		if (!e.name) {
			rc = qs_diag_set(diag, -ENOMEM, "out of memory");
			break;
		}
		e.off = h.tensors[i].offset;
		e.nval = h.tensors[i].nbytes / 4;
		e.ncall = 1.0f;
		if ((rc = add_entry(imp, &e, &cap, diag)))
			free(e.name);
	}
	qs_st_header_release(&h);
	return rc ? rc : sort_entries(imp, diag);
}

int qs_importance_open(const char *path, struct qs_importance **out, struct qs_diag *diag)
{
	struct qs_importance *imp = calloc(1, sizeof(*imp));
	struct rd *r = NULL;
	struct stat st;
	uint8_t head[9];
	int rc;

	*out = NULL;
	if (!imp || !(imp->path = strdup(path))) {
		free(imp);
		return qs_diag_set(diag, -ENOMEM, "out of memory");
	}
	imp->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (imp->fd < 0) {
		rc = -errno;
		qs_diag_set(diag, rc, "'%s': %s", path, strerror(errno));
		goto fail;
	}
	if (fstat(imp->fd, &st) < 0) {
		rc = -errno;
		qs_diag_set(diag, rc, "'%s': %s", path, strerror(errno));
		goto fail;
	}
	imp->size = (uint64_t)st.st_size;
	memset(head, 0, sizeof(head));
	if (imp->size >= 9 && (rc = qs_pread_full(imp->fd, head, 9, 0)) < 0) {
		qs_diag_set(diag, rc, "'%s': cannot read: %s", path, qs_strerror(rc));
		goto fail;
	}
	if (imp->size >= 8 && memcmp(head, "GGUF", 4) == 0)
		imp->kind = IMP_GGUF;
	else if (imp->size >= 9 && head[8] == '{' && qs_get_le64(head) <= imp->size - 8)
		imp->kind = IMP_ST;
	else
		imp->kind = IMP_DAT;

	if (imp->kind == IMP_ST) {
		rc = open_st(imp, diag);
	} else {
		r = malloc(sizeof(*r));
		if (!r) {
			rc = qs_diag_set(diag, -ENOMEM, "out of memory");
			goto fail;
		}
		memset(r, 0, offsetof(struct rd, buf));
		r->fd = imp->fd;
		r->size = imp->size;
		r->boff = 0;
		r->blen = 0;
		r->path = path;
		r->diag = diag;
		rc = imp->kind == IMP_GGUF ? open_gguf(imp, r, diag) : open_dat(imp, r, diag);
		free(r);
	}
	if (rc < 0)
		goto fail;
	*out = imp;
	return 0;
fail:
	qs_importance_free(imp);
	return rc;
}

void qs_importance_free(struct qs_importance *imp)
{
	if (!imp)
		return;
	for (size_t i = 0; i < imp->n; i++)
		free(imp->e[i].name);
	free(imp->e);
	if (imp->fd >= 0)
		close(imp->fd);
	free(imp->path);
	free(imp);
}

/* MoE experts: llama.cpp stacks a layer's experts in one entry
 * "blk.N.ffn_{gate,up,down}_exps.weight" of nmat = n_expert matrices
 * (llama-imatrix collects per expert).  The Hugging Face per-expert
 * tensor "model.layers.N.mlp.experts.E.gate_proj.weight" (DeepSeek,
 * Qwen-MoE) or "model.layers.N.block_sparse_moe.experts.E.w1.weight"
 * (Mixtral: w1 gate, w3 up, w2 down) maps to matrix E of it; a stacked
 * 3-D "model.layers.N.mlp.experts.gate_proj.weight" to the whole entry
 * (merged over experts, as its statistics are per tensor).  *expert is
 * the matrix, or -1 for all. */
static bool map_expert_name(const char *hf, char *out, size_t cap, long *expert)
{
	static const struct {
		const char *hf, *gg;
	} proj[] = {
		{"gate_proj.weight", "ffn_gate_exps.weight"},
		{"up_proj.weight", "ffn_up_exps.weight"},
		{"down_proj.weight", "ffn_down_exps.weight"},
		{"w1.weight", "ffn_gate_exps.weight"},
		{"w3.weight", "ffn_up_exps.weight"},
		{"w2.weight", "ffn_down_exps.weight"},
	};
	static const char pre[] = "model.layers.";
	if (strncmp(hf, pre, sizeof(pre) - 1) != 0)
		return false;
	const char *p = hf + sizeof(pre) - 1, *q = p;
	while (*q >= '0' && *q <= '9')
		q++;
	if (q == p || q - p > 9)
		return false;
	const char *rest;
	if (strncmp(q, ".mlp.experts.", 13) == 0)
		rest = q + 13;
	else if (strncmp(q, ".block_sparse_moe.experts.", 26) == 0)
		rest = q + 26;
	else
		return false;
	*expert = -1;
	if (*rest >= '0' && *rest <= '9') {
		char *end;
		errno = 0;
		long e = strtol(rest, &end, 10);
		if (errno || *end != '.' || e > 1000000)
			return false;
		*expert = e;
		rest = end + 1;
	}
	for (size_t i = 0; i < sizeof(proj) / sizeof(*proj); i++)
		if (strcmp(rest, proj[i].hf) == 0) {
			int n = snprintf(out, cap, "blk.%.*s.%s", (int)(q - p), p, proj[i].gg);
			return n > 0 && (size_t)n < cap;
		}
	return false;
}

/* llama.cpp's name of a Llama-family Hugging Face tensor, or false. */
static bool map_name(const char *hf, char *out, size_t cap)
{
	static const struct {
		const char *hf, *gg;
	} part[] = {
		{"self_attn.q_proj.weight", "attn_q.weight"},
		{"self_attn.k_proj.weight", "attn_k.weight"},
		{"self_attn.v_proj.weight", "attn_v.weight"},
		{"self_attn.o_proj.weight", "attn_output.weight"},
		{"mlp.gate_proj.weight", "ffn_gate.weight"},
		{"mlp.up_proj.weight", "ffn_up.weight"},
		{"mlp.down_proj.weight", "ffn_down.weight"},
	};
	if (strcmp(hf, "lm_head.weight") == 0)
		return snprintf(out, cap, "output.weight") > 0;
	if (strcmp(hf, "model.embed_tokens.weight") == 0)
		return snprintf(out, cap, "token_embd.weight") > 0;
	static const char pre[] = "model.layers.";
	if (strncmp(hf, pre, sizeof(pre) - 1) != 0)
		return false;
	const char *p = hf + sizeof(pre) - 1, *q = p;
	while (*q >= '0' && *q <= '9')
		q++;
	if (q == p || q - p > 9 || *q != '.')
		return false;
	for (size_t i = 0; i < sizeof(part) / sizeof(*part); i++)
		if (strcmp(q + 1, part[i].hf) == 0) {
			int n = snprintf(out, cap, "blk.%.*s.%s", (int)(q - p), p, part[i].gg);
			return n > 0 && (size_t)n < cap;
		}
	return false;
}

static int read_f32(const struct qs_importance *imp, const char *tensor, uint64_t off,
		    uint64_t n, float *dst, struct qs_diag *diag)
{
	uint8_t buf[4096];
	for (uint64_t i = 0; i < n;) {
		size_t take = n - i > sizeof(buf) / 4 ? sizeof(buf) / 4 : (size_t)(n - i);
		int rc = qs_pread_full(imp->fd, buf, 4 * take, off + 4 * i);
		if (rc < 0)
			return qs_diag_set(diag, rc, "'%s': tensor '%s': cannot read: %s",
					   qs_basename(imp->path), tensor, qs_strerror(rc));
		for (size_t j = 0; j < take; j++) {
			uint32_t u = qs_get_le32(buf + 4 * j);
			memcpy(&dst[i + j], &u, 4);
		}
		i += take;
	}
	return 0;
}

int qs_importance_get(const struct qs_importance *imp, const char *tensor, uint64_t cols,
		      float *dst, struct qs_diag *diag)
{
	const char *fn = qs_basename(imp->path);
	const struct imp_entry *e = find(imp, tensor);
	char mapped[128];
	int rc;

	long expert = -1;
	if (!e && map_name(tensor, mapped, sizeof(mapped)))
		e = find(imp, mapped);
	if (!e && map_expert_name(tensor, mapped, sizeof(mapped), &expert))
		e = find(imp, mapped);
	if (!e)
		return 0;
	/* the entry is cols x nmat; nmat = counts for GGUF, any for .dat */
	uint64_t nmat = cols ? e->nval / cols : 0;
	if (cols == 0 || e->nval % cols != 0 || nmat == 0 ||
	    (imp->kind == IMP_GGUF && e->ncounts != nmat) ||
	    (imp->kind == IMP_ST && nmat != 1))
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s' has %" PRIu64 " importance values, expected %"
				   PRIu64, fn, tensor, e->nval, cols);
	/* one expert of a stacked entry: only its matrix */
	uint64_t m0 = 0;
	if (expert >= 0) {
		if ((uint64_t)expert >= nmat)
			return qs_diag_set(diag, -QS_EFORMAT,
					   "'%s': tensor '%s' is expert %ld but '%s' holds %" PRIu64
					   " experts", fn, tensor, expert, mapped, nmat);
		m0 = (uint64_t)expert;
		nmat = m0 + 1;
	}

	double *acc = calloc((size_t)cols, sizeof(*acc));
	float *row = malloc((size_t)cols * sizeof(*row));
	double total = 0;
	if (!acc || !row) {
		rc = qs_diag_set(diag, -ENOMEM, "out of memory");
		goto out;
	}
	for (uint64_t m = m0; m < nmat; m++) {
		if ((rc = read_f32(imp, tensor, e->off + 4 * m * cols, cols, row, diag)))
			goto out;
		for (uint64_t j = 0; j < cols; j++) {
			if (!isfinite(row[j]) || row[j] < 0) {
				rc = qs_diag_set(diag, -QS_EFORMAT,
						 "'%s': tensor '%s' has a negative or non-finite "
						 "importance value", fn, tensor);
				goto out;
			}
			acc[j] += row[j];
		}
		if (imp->kind == IMP_GGUF) {
			float c;
			if ((rc = read_f32(imp, tensor, e->counts_off + 4 * m, 1, &c, diag)))
				goto out;
			if (!isfinite(c) || c < 0) {
				rc = qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor '%s' has a bad count",
						 fn, tensor);
				goto out;
			}
			total += c;
		} else if (imp->kind == IMP_DAT) {
			total += e->ncall;
		} else {
			total = 1;
		}
	}
	/* no calls recorded: the statistics say nothing, like a missing entry */
	for (uint64_t j = 0; j < cols; j++) {
		double v = total > 0 ? acc[j] / total : 0.0;
		/* finite sums over a tiny (fractional) GGUF count can still
		 * overflow f32 and would poison the scheme's scales */
		if (v > FLT_MAX) {
			rc = qs_diag_set(diag, -QS_EFORMAT,
					 "'%s': tensor '%s' has an importance value too large for f32",
					 fn, tensor);
			goto out;
		}
		dst[j] = (float)v;
	}
	rc = total > 0 ? 1 : 0;
out:
	free(acc);
	free(row);
	return rc;
}
