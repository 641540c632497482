/* st_stream.c - the safetensors header parsed as a stream.
 *
 * The header is JSON (RFC 8259) of at most 100 MB.  Loading it whole, then
 * building a JSON tree of it, then re-serializing parts cost several times
 * its size (365 MiB for a 90 MB header under --memory 64M).  This parser
 * reads it through a 64 KiB window, validates the JSON grammar as it goes
 * and keeps only what qshard uses: each tensor's name, dtype, shape and
 * offsets, and the __metadata__ strings (capped: they are carried into the
 * output).  Memory is the tensor table plus the window, whatever the
 * header's size.
 *
 * Rules enforced as a strict JSON reader would (they were jansson's with
 * JSON_REJECT_DUPLICATES before): UTF-8 only, no NUL in strings, no raw
 * control characters, escapes and surrogate pairs as RFC 8259 §7, integers
 * within 64-bit signed range, nesting at most 2048 deep, duplicate keys
 * refused in the top object, in tensor entries and in __metadata__, only
 * whitespace after the object.  Keys inside values qshard ignores are
 * checked for grammar only.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "safetensors.h"
#include "st_stream.h"
#include "util.h"

#define WINDOW (64u << 10)
#define MAX_DEPTH 2048
/* A tensor name or metadata key longer than this is no real checkpoint's. */
#define MAX_KEY (64u << 10)

struct jp {
	const char *fname;
	struct qs_diag *diag;
	const uint8_t *mem;    /* buffer source, or NULL for fd */
	int fd;
	uint64_t base, len;    /* the JSON is bytes [base, base + len) */
	uint64_t pos;          /* next byte, relative to base */
	uint8_t *win;
	uint64_t win_start;
	size_t win_len;
	int line, col;
	int err;               /* first error (the diag holds its message) */
	uint64_t meta_bytes;
	bool in_meta_value;    /* a string over its cap is metadata's */
};

struct sbuf {
	char *p;
	size_t len, cap;
};

static int fail(struct jp *j, const char *what)
{
	if (!j->err)
		j->err = qs_diag_set(j->diag, -QS_EFORMAT,
				     "'%s': header is not valid JSON: %s (line %d, column %d)",
				     j->fname, what, j->line, j->col);
	return j->err;
}

/* Next byte without consuming it: 0..255, -1 at the end of the JSON. */
static int peek(struct jp *j)
{
	if (j->err)
		return -1;
	if (j->pos >= j->len)
		return -1;
	if (j->mem)
		return j->mem[j->pos];
	if (j->pos < j->win_start || j->pos >= j->win_start + j->win_len) {
		uint64_t left = j->len - j->pos;
		size_t n = left < WINDOW ? (size_t)left : WINDOW;
		int rc = qs_pread_full(j->fd, j->win, n, j->base + j->pos);
		if (rc < 0) {
			j->err = qs_diag_set(j->diag, rc, "'%s': cannot read header: %s", j->fname,
					     rc == -QS_EFORMAT ? "file shrank while reading"
							       : qs_strerror(rc));
			return -1;
		}
		j->win_start = j->pos;
		j->win_len = n;
	}
	return j->win[j->pos - j->win_start];
}

static int get(struct jp *j)
{
	int c = peek(j);
	if (c < 0)
		return c;
	j->pos++;
	if (c == '\n') {
		j->line++;
		j->col = 0;
	} else {
		j->col++;
	}
	return c;
}

/* Whitespace, scanned a window at a time: writers pad headers with it,
 * and a hostile one may be 100 MB of it. */
static void skip_ws(struct jp *j)
{
	for (;;) {
		int c = peek(j);  /* loads the window holding pos */
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			return;
		const uint8_t *p = j->mem ? j->mem : j->win;
		uint64_t lo = j->mem ? 0 : j->win_start;
		uint64_t hi = j->mem ? j->len : j->win_start + j->win_len;
		while (j->pos < hi) {
			uint8_t b = p[j->pos - lo];
			if (b == '\n') {
				j->line++;
				j->col = 0;
			} else if (b == ' ' || b == '\t' || b == '\r') {
				j->col++;
			} else {
				return;
			}
			j->pos++;
		}
	}
}

static int expect(struct jp *j, int want, const char *what)
{
	skip_ws(j);
	if (get(j) != want)
		return fail(j, what);
	return 0;
}

static int sb_put(struct jp *j, struct sbuf *s, const char *b, size_t n, size_t max)
{
	if (!s)
		return 0;
	if (s->len + n + 1 > max + 1) {
		if (j->in_meta_value && !j->err)
			j->err = qs_diag_set(j->diag, -QS_ETOOBIG,
					     "'%s': '__metadata__' holds more than the %u MiB qshard "
					     "carries",
					     j->fname, QS_ST_MAX_METADATA >> 20);
		return fail(j, "string too long");
	}
	if (s->len + n + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 64;
		while (cap < s->len + n + 1)
			cap *= 2;
		char *p = realloc(s->p, cap);
		if (!p) {
			j->err = qs_diag_set(j->diag, -ENOMEM, "'%s': out of memory", j->fname);
			return j->err;
		}
		s->p = p;
		s->cap = cap;
	}
	memcpy(s->p + s->len, b, n);
	s->len += n;
	s->p[s->len] = '\0';
	return 0;
}

static int hex4(struct jp *j, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		int c = get(j);
		int d = c >= '0' && c <= '9' ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return fail(j, "invalid \\u escape");
		v = v * 16 + (unsigned)d;
	}
	*out = v;
	return 0;
}

static size_t utf8_encode(unsigned cp, char *b)
{
	if (cp < 0x80) {
		b[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		b[0] = (char)(0xC0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		b[0] = (char)(0xE0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		b[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	b[0] = (char)(0xF0 | (cp >> 18));
	b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	b[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* One UTF-8 sequence whose first byte c was read (RFC 3629: shortest form,
 * no surrogates, at most U+10FFFF). */
static int utf8_rest(struct jp *j, int c, struct sbuf *s, size_t max)
{
	char b[4] = {(char)c};
	int n;
	unsigned cp;
	if (c >= 0xC2 && c <= 0xDF) {
		n = 1;
		cp = (unsigned)c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 2;
		cp = (unsigned)c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 3;
		cp = (unsigned)c & 0x07;
	} else {
		return fail(j, "invalid UTF-8");
	}
	for (int i = 1; i <= n; i++) {
		int d = get(j);
		if (d < 0x80 || d > 0xBF)
			return fail(j, "invalid UTF-8");
		b[i] = (char)d;
		cp = (cp << 6) | ((unsigned)d & 0x3F);
	}
	if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
	    (cp >= 0xD800 && cp <= 0xDFFF))
		return fail(j, "invalid UTF-8");
	return sb_put(j, s, b, (size_t)n + 1, max);
}

/* A string; the opening quote is next.  Decoded into s (may be NULL). */
static int parse_string(struct jp *j, struct sbuf *s, size_t max)
{
	if (s)
		s->len = 0;
	if (sb_put(j, s, "", 0, max) < 0)
		return j->err;
	if (get(j) != '"')
		return fail(j, "string expected");
	for (;;) {
		int c = get(j);
		if (c < 0)
			return fail(j, "unterminated string");
		if (c == '"')
			return 0;
		if (c < 0x20)
			return fail(j, "control character in a string");
		if (c >= 0x80) {
			if (utf8_rest(j, c, s, max) < 0)
				return j->err;
			continue;
		}
		if (c != '\\') {
			char b = (char)c;
			if (sb_put(j, s, &b, 1, max) < 0)
				return j->err;
			continue;
		}
		c = get(j);
		char e;
		switch (c) {
		case '"': e = '"'; break;
		case '\\': e = '\\'; break;
		case '/': e = '/'; break;
		case 'b': e = '\b'; break;
		case 'f': e = '\f'; break;
		case 'n': e = '\n'; break;
		case 'r': e = '\r'; break;
		case 't': e = '\t'; break;
		case 'u': {
			unsigned cp, lo;
			if (hex4(j, &cp) < 0)
				return j->err;
			if (cp >= 0xDC00 && cp <= 0xDFFF)
				return fail(j, "invalid Unicode escape (lone low surrogate)");
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (get(j) != '\\' || get(j) != 'u' || hex4(j, &lo) < 0 || lo < 0xDC00 ||
				    lo > 0xDFFF)
					return fail(j, "invalid Unicode escape (lone high surrogate)");
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			}
			/* a NUL would cut names short in C */
			if (cp == 0)
				return fail(j, "\\u0000 is not allowed");
			char b[4];
			if (sb_put(j, s, b, utf8_encode(cp, b), max) < 0)
				return j->err;
			continue;
		}
		default:
			return fail(j, "invalid escape");
		}
		if (sb_put(j, s, &e, 1, max) < 0)
			return j->err;
	}
}

enum num_kind { NUM_UINT, NUM_NEG, NUM_REAL };

/* A number (RFC 8259 §6).  Integers beyond the signed 64-bit range are an
 * error, as they were for the tree parser. */
static int parse_number(struct jp *j, enum num_kind *kind, uint64_t *value)
{
	bool neg = false, real = false;
	uint64_t v = 0;
	bool over = false;
	if (peek(j) == '-') {
		neg = true;
		get(j);
	}
	int c = peek(j);
	if (c < '0' || c > '9')
		return fail(j, "invalid number");
	if (c == '0') {
		get(j);
	} else {
		while ((c = peek(j)) >= '0' && c <= '9') {
			get(j);
			if (!qs_mul_u64(v, 10, &v) || !qs_add_u64(v, (uint64_t)(c - '0'), &v))
				over = true;
		}
	}
	if (peek(j) == '.') {
		real = true;
		get(j);
		if ((c = peek(j)) < '0' || c > '9')
			return fail(j, "invalid number");
		while ((c = peek(j)) >= '0' && c <= '9')
			get(j);
	}
	if ((c = peek(j)) == 'e' || c == 'E') {
		real = true;
		get(j);
		if ((c = peek(j)) == '+' || c == '-')
			get(j);
		if ((c = peek(j)) < '0' || c > '9')
			return fail(j, "invalid number");
		while ((c = peek(j)) >= '0' && c <= '9')
			get(j);
	}
	if (!real && (over || v > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX)))
		return fail(j, neg ? "too big negative integer" : "too big integer");
	*kind = real ? NUM_REAL : neg && v ? NUM_NEG : NUM_UINT;
	*value = v;
	return 0;
}

static int parse_literal(struct jp *j, const char *word)
{
	for (const char *p = word; *p; p++)
		if (get(j) != *p)
			return fail(j, "invalid literal");
	return 0;
}

/* Any value, checked for grammar and dropped. */
static int skip_value(struct jp *j, int depth)
{
	if (depth > MAX_DEPTH)
		return fail(j, "maximum parsing depth reached");
	skip_ws(j);
	int c = peek(j);
	enum num_kind k;
	uint64_t v;
	switch (c) {
	case '"':
		return parse_string(j, NULL, SIZE_MAX - 1);
	case 't':
		return parse_literal(j, "true");
	case 'f':
		return parse_literal(j, "false");
	case 'n':
		return parse_literal(j, "null");
	case '[':
		get(j);
		skip_ws(j);
		if (peek(j) == ']') {
			get(j);
			return 0;
		}
		for (;;) {
			if (skip_value(j, depth + 1) < 0)
				return j->err;
			skip_ws(j);
			c = get(j);
			if (c == ']')
				return 0;
			if (c != ',')
				return fail(j, "',' or ']' expected");
		}
	case '{':
		get(j);
		skip_ws(j);
		if (peek(j) == '}') {
			get(j);
			return 0;
		}
		for (;;) {
			skip_ws(j);
			if (parse_string(j, NULL, SIZE_MAX - 1) < 0 || expect(j, ':', "':' expected") < 0 ||
			    skip_value(j, depth + 1) < 0)
				return j->err;
			skip_ws(j);
			c = get(j);
			if (c == '}')
				return 0;
			if (c != ',')
				return fail(j, "',' or '}' expected");
		}
	default:
		if (c == '-' || (c >= '0' && c <= '9'))
			return parse_number(j, &k, &v);
		return fail(j, c < 0 ? "unexpected end of the header" : "invalid token");
	}
}

/* What one tensor entry said, before the checks parse_entry makes in its
 * fixed order (so messages do not depend on key order). */
struct entry {
	bool is_object;
	int dtype_state;            /* 0 missing, 1 string, 2 other */
	char dtype[64];
	bool dtype_long;
	int shape_state;            /* 0 missing, 1 array, 2 other */
	size_t shape_n;
	uint64_t shape[QS_MAX_DIMS];
	bool shape_bad;             /* a value within the first QS_MAX_DIMS is not a u64 */
	int offs_state;
	size_t offs_n;
	uint64_t offs[2];
	bool offs_bad;
};

/* An array of integers: up to cap values kept, the count, and whether a
 * kept one is not a non-negative integer. */
static int int_array(struct jp *j, uint64_t *vals, size_t cap, size_t *n, bool *bad, int depth)
{
	*n = 0;
	*bad = false;
	get(j);  /* '[' */
	skip_ws(j);
	if (peek(j) == ']') {
		get(j);
		return 0;
	}
	for (;;) {
		skip_ws(j);
		int c = peek(j);
		if (c == '-' || (c >= '0' && c <= '9')) {
			enum num_kind k;
			uint64_t v;
			if (parse_number(j, &k, &v) < 0)
				return j->err;
			if (*n < cap) {
				vals[*n] = v;
				if (k != NUM_UINT)
					*bad = true;
			}
		} else {
			if (skip_value(j, depth + 1) < 0)
				return j->err;
			if (*n < cap)
				*bad = true;
		}
		(*n)++;
		skip_ws(j);
		c = get(j);
		if (c == ']')
			return 0;
		if (c != ',')
			return fail(j, "',' or ']' expected");
	}
}

static int dup_key(struct jp *j, const char *key)
{
	if (!j->err)
		j->err = qs_diag_set(j->diag, -QS_EFORMAT,
				     "'%s': header is not valid JSON: duplicate object key '%s' "
				     "(line %d, column %d)",
				     j->fname, key, j->line, j->col);
	return j->err;
}

static int parse_entry_json(struct jp *j, struct entry *e, struct sbuf *key)
{
	memset(e, 0, sizeof(*e));
	skip_ws(j);
	if (peek(j) != '{')
		return skip_value(j, 1);
	e->is_object = true;
	get(j);
	skip_ws(j);
	if (peek(j) == '}') {
		get(j);
		return 0;
	}
	/* keys other than the three are ignored, but a repeated one is
	 * refused as anywhere in the entry: kept to compare */
	struct sbuf other[16];
	size_t nother = 0;
	int rc = 0;
	for (;;) {
		skip_ws(j);
		if ((rc = parse_string(j, key, MAX_KEY)) < 0 || (rc = expect(j, ':', "':' expected")) < 0)
			break;
		skip_ws(j);
		int c = peek(j);
		int *state = NULL;
		if (strcmp(key->p, "dtype") == 0)
			state = &e->dtype_state;
		else if (strcmp(key->p, "shape") == 0)
			state = &e->shape_state;
		else if (strcmp(key->p, "data_offsets") == 0)
			state = &e->offs_state;
		if (state && *state) {
			rc = dup_key(j, key->p);
			break;
		}
		if (!state) {
			for (size_t i = 0; i < nother; i++)
				if (strcmp(other[i].p, key->p) == 0)
					rc = dup_key(j, key->p);
			if (rc < 0)
				break;
			if (nother < sizeof(other) / sizeof(*other)) {
				other[nother] = (struct sbuf){0};
				if ((rc = sb_put(j, &other[nother], key->p, key->len, MAX_KEY)) < 0)
					break;
				nother++;
			}
			rc = skip_value(j, 2);
		} else if (state == &e->dtype_state && c == '"') {
			struct sbuf d = {0};
			rc = parse_string(j, &d, MAX_KEY);
			if (rc == 0) {
				e->dtype_state = 1;
				e->dtype_long = d.len >= sizeof(e->dtype);
				snprintf(e->dtype, sizeof(e->dtype), "%s", d.p);
			}
			free(d.p);
		} else if (state == &e->shape_state && c == '[') {
			e->shape_state = 1;
			rc = int_array(j, e->shape, QS_MAX_DIMS, &e->shape_n, &e->shape_bad, 2);
		} else if (state == &e->offs_state && c == '[') {
			e->offs_state = 1;
			rc = int_array(j, e->offs, 2, &e->offs_n, &e->offs_bad, 2);
		} else {
			*state = 2;
			rc = skip_value(j, 2);
		}
		if (rc < 0)
			break;
		skip_ws(j);
		c = get(j);
		if (c == '}')
			break;
		if (c != ',') {
			rc = fail(j, "',' or '}' expected");
			break;
		}
	}
	for (size_t i = 0; i < nother; i++)
		free(other[i].p);
	return rc;
}

/* The checks of one entry, in the order (and with the messages) of the
 * safetensors rules; begin/end get the relative data offsets. */
static int check_entry(struct jp *j, const char *name, const struct entry *e,
		       struct qs_st_tensor *t, uint64_t *begin, uint64_t *end)
{
	const char *fname = j->fname;
	struct qs_diag *diag = j->diag;
	if (name[0] == '\0')
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor with an empty name", fname);
	if (!e->is_object)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': entry is not a JSON object", fname, name);
	if (e->dtype_state != 1)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': 'dtype' missing or not a string", fname, name);
	if (e->shape_state != 1)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': 'shape' missing or not an array", fname, name);
	if (e->offs_state != 1 || e->offs_n != 2)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': 'data_offsets' is not an array of 2 integers",
				   fname, name);
	if (e->dtype_long || qs_dtype_parse(e->dtype, &t->dtype) < 0)
		return qs_diag_set(diag, -QS_EDTYPE, "'%s': tensor '%s': unknown dtype '%s%s'",
				   fname, name, e->dtype, e->dtype_long ? "..." : "");
	if (e->shape_n > QS_MAX_DIMS)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': %zu dimensions, at most %d supported",
				   fname, name, e->shape_n, QS_MAX_DIMS);
	if (e->shape_bad)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': shape holds a value that is not a non-negative integer",
				   fname, name);
	t->ndim = (uint32_t)e->shape_n;
	uint64_t count = 1;
	bool overflow = false;
	for (size_t d = 0; d < e->shape_n; d++) {
		t->shape[d] = e->shape[d];
		/* keep going after an overflow: a later 0 makes the product 0,
		 * but no reader could index such a shape */
		if (!qs_mul_u64(count, t->shape[d], &count))
			overflow = true;
	}
	if (!overflow && !qs_mul_u64(count, qs_dtype_size(t->dtype), &t->nbytes))
		overflow = true;
	if (overflow)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': shape size overflows 64 bits", fname, name);
	if (e->offs_bad)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': 'data_offsets' is not an array of 2 non-negative integers",
				   fname, name);
	*begin = e->offs[0];
	*end = e->offs[1];
	if (*begin > *end)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': data offsets begin %llu > end %llu", fname, name,
				   (unsigned long long)*begin, (unsigned long long)*end);
	if (*end - *begin != t->nbytes)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': shape and dtype need %llu bytes but data offsets span %llu",
				   fname, name, (unsigned long long)t->nbytes,
				   (unsigned long long)(*end - *begin));
	return 0;
}

/* __metadata__: an object of strings, re-serialized sorted and compact so
 * the same metadata always fingerprints the same. */
static int parse_metadata(struct jp *j, struct sbuf *key, char **out)
{
	skip_ws(j);
	if (peek(j) != '{') {
		if (skip_value(j, 1) < 0)
			return j->err;
		return qs_diag_set(j->diag, -QS_EFORMAT, "'%s': '__metadata__' is not a JSON object",
				   j->fname);
	}
	get(j);
	json_t *meta = json_object();
	struct sbuf val = {0};
	int rc = meta ? 0 : qs_diag_set(j->diag, -ENOMEM, "'%s': out of memory", j->fname);
	skip_ws(j);
	if (rc == 0 && peek(j) == '}') {
		get(j);
		goto done;
	}
	while (rc == 0) {
		skip_ws(j);
		if ((rc = parse_string(j, key, MAX_KEY)) < 0 || (rc = expect(j, ':', "':' expected")) < 0)
			break;
		skip_ws(j);
		if (peek(j) != '"') {
			if ((rc = skip_value(j, 2)) == 0)
				rc = qs_diag_set(j->diag, -QS_EFORMAT,
						 "'%s': '__metadata__' value '%s' is not a string",
						 j->fname, key->p);
			break;
		}
		j->in_meta_value = true;
		rc = parse_string(j, &val, QS_ST_MAX_METADATA);
		j->in_meta_value = false;
		if (rc < 0)
			break;
		j->meta_bytes += key->len + val.len;
		if (j->meta_bytes > QS_ST_MAX_METADATA) {
			rc = qs_diag_set(j->diag, -QS_ETOOBIG,
					 "'%s': '__metadata__' holds more than the %u MiB qshard carries",
					 j->fname, QS_ST_MAX_METADATA >> 20);
			break;
		}
		if (json_object_get(meta, key->p)) {
			rc = dup_key(j, key->p);
			break;
		}
		if (json_object_set_new(meta, key->p, json_stringn(val.p, val.len)) < 0) {
			rc = qs_diag_set(j->diag, -ENOMEM, "'%s': out of memory", j->fname);
			break;
		}
		skip_ws(j);
		int c = get(j);
		if (c == '}')
			break;
		if (c != ',')
			rc = fail(j, "',' or '}' expected");
	}
done:
	if (rc == 0) {
		*out = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
		if (!*out)
			rc = qs_diag_set(j->diag, -ENOMEM, "'%s': out of memory", j->fname);
	}
	free(val.p);
	json_decref(meta);
	return rc;
}

static int cmp_name(const void *a, const void *b)
{
	const struct qs_st_tensor *x = a, *y = b;
	return strcmp(x->name, y->name);
}

int qs_st_parse_stream(const char *fname, const uint8_t *mem, int fd, uint64_t base,
		       uint64_t len, uint64_t data_size, struct qs_st_tensor **tensors_out,
		       size_t *n_out, char **meta_out, struct qs_diag *diag)
{
	struct jp j = {.fname = fname, .diag = diag, .mem = mem, .fd = fd, .base = base,
		       .len = len, .line = 1};
	struct qs_st_tensor *tensors = NULL;
	size_t n = 0, cap = 0;
	char *meta = NULL;
	bool have_meta = false;
	struct sbuf key = {0};
	struct entry e;
	int rc = 0;
	*tensors_out = NULL;
	*n_out = 0;
	*meta_out = NULL;
	if (!mem && !(j.win = malloc(WINDOW)))
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", fname);

	skip_ws(&j);
	int c = peek(&j);
	if (c != '{') {
		/* a document that is JSON but not an object is named as such */
		if (c >= 0 && skip_value(&j, 1) == 0) {
			skip_ws(&j);
			if (peek(&j) < 0 && !j.err) {
				rc = qs_diag_set(diag, -QS_EFORMAT, "'%s': header is not a JSON object",
						 fname);
				goto out;
			}
		}
		rc = j.err ? j.err : fail(&j, c < 0 ? "'{' expected, the header is empty" : "'{' expected");
		goto out;
	}
	get(&j);
	skip_ws(&j);
	if (peek(&j) == '}') {
		get(&j);
		goto after;
	}
	for (;;) {
		skip_ws(&j);
		if ((rc = parse_string(&j, &key, MAX_KEY)) < 0 ||
		    (rc = expect(&j, ':', "':' expected")) < 0)
			goto out;
		if (strcmp(key.p, "__metadata__") == 0) {
			if (have_meta) {
				rc = dup_key(&j, key.p);
				goto out;
			}
			have_meta = true;
			struct sbuf mkey = {0};
			rc = parse_metadata(&j, &mkey, &meta);
			free(mkey.p);
			if (rc < 0)
				goto out;
		} else {
			char *name = strdup(key.p);
			if (!name) {
				rc = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", fname);
				goto out;
			}
			rc = parse_entry_json(&j, &e, &key);
			if (rc < 0) {
				free(name);
				goto out;
			}
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				struct qs_st_tensor *nt = realloc(tensors, ncap * sizeof(*nt));
				if (!nt) {
					free(name);
					rc = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", fname);
					goto out;
				}
				tensors = nt;
				cap = ncap;
			}
			struct qs_st_tensor *t = &tensors[n];
			memset(t, 0, sizeof(*t));
			uint64_t begin = 0, end = 0;
			rc = check_entry(&j, name, &e, t, &begin, &end);
			if (rc == 0 && end > data_size)
				rc = qs_diag_set(diag, -QS_EFORMAT,
						 "'%s': tensor '%s' extends past end of file (data ends at %llu, data area is %llu bytes)",
						 fname, name, (unsigned long long)end,
						 (unsigned long long)data_size);
			if (rc < 0) {
				free(name);
				goto out;
			}
			t->name = name;
			/* the caller adds the data area's file offset */
			t->offset = begin;
			n++;
		}
		skip_ws(&j);
		c = get(&j);
		if (c == '}')
			break;
		if (c != ',') {
			rc = fail(&j, "',' or '}' expected");
			goto out;
		}
	}
after:
	skip_ws(&j);
	if (peek(&j) >= 0 || j.err) {
		rc = j.err ? j.err : fail(&j, "end of file expected");
		goto out;
	}
	/* a repeated tensor name: sorted copy, neighbours compared */
	if (n > 1) {
		struct qs_st_tensor *by = malloc(n * sizeof(*by));
		if (!by) {
			rc = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", fname);
			goto out;
		}
		memcpy(by, tensors, n * sizeof(*by));
		qsort(by, n, sizeof(*by), cmp_name);
		for (size_t i = 1; i < n && rc == 0; i++)
			if (strcmp(by[i - 1].name, by[i].name) == 0)
				rc = qs_diag_set(diag, -QS_EFORMAT,
						 "'%s': header is not valid JSON: duplicate object key '%s'",
						 fname, by[i].name);
		free(by);
		if (rc < 0)
			goto out;
	}
	*tensors_out = tensors;
	*n_out = n;
	*meta_out = meta;
	tensors = NULL;
	meta = NULL;
	n = 0;
out:
	if (rc == 0 && j.err)
		rc = j.err;
	for (size_t i = 0; i < n; i++)
		free(tensors[i].name);
	free(tensors);
	free(meta);
	free(key.p);
	free(j.win);
	return rc;
}
