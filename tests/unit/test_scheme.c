/* test_scheme.c - the scheme registry and "NAME[:key=val,...]" parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qshard.h"
#include "scheme.h"

static void test_registry(void **state)
{
	(void)state;
	size_t n = 0;
	bool has_rtn = false;
	for (; qs_scheme_registry[n]; n++) {
		assert_ptr_equal(qs_scheme_find(qs_scheme_registry[n]->name), qs_scheme_registry[n]);
		has_rtn |= qs_scheme_registry[n] == &qs_scheme_rtn;
	}
	assert_true(n >= 1);
	assert_true(has_rtn);
	assert_ptr_equal(qs_scheme_find("rtn"), &qs_scheme_rtn);
	assert_null(qs_scheme_find("rt"));
	assert_null(qs_scheme_find("rtnx"));
	assert_null(qs_scheme_find("RTN"));
	assert_null(qs_scheme_find(""));
	assert_null(qs_scheme_find(NULL));
}

static void expect_ok(const char *spec, unsigned bits, unsigned group, const char *text)
{
	struct qs_scheme s;
	struct qs_diag d = {""};
	memset(&s, 0x5a, sizeof(s));
	int rc = qs_scheme_parse(spec, &s, &d);
	if (rc != 0)
		fail_msg("'%s': %d %s", spec, rc, d.msg);
	assert_ptr_equal(s.ops, &qs_scheme_rtn);
	unsigned v;
	assert_int_equal(qs_scheme_param(&s, "bits", &v), 0);
	assert_int_equal(v, bits);
	assert_int_equal(qs_scheme_param(&s, "group", &v), 0);
	assert_int_equal(v, group);
	assert_string_equal(s.text, text);
	/* the canonical text parses back to the same scheme */
	struct qs_scheme again;
	assert_int_equal(qs_scheme_parse(s.text, &again, NULL), 0);
	assert_memory_equal(again.params, s.params, sizeof(s.params));
	assert_string_equal(again.text, text);
}

static void test_parse_ok(void **state)
{
	(void)state;
	expect_ok("rtn", 4, 128, "rtn:bits=4,group=128");
	expect_ok("rtn:", 4, 128, "rtn:bits=4,group=128");
	expect_ok("rtn:bits=3", 3, 128, "rtn:bits=3,group=128");
	expect_ok("rtn:bits=3,group=64", 3, 64, "rtn:bits=3,group=64");
	expect_ok("rtn:group=256,bits=8", 8, 256, "rtn:bits=8,group=256");
	expect_ok("rtn:group=32", 4, 32, "rtn:bits=4,group=32");
	expect_ok("rtn:bits=2", 2, 128, "rtn:bits=2,group=128");
	expect_ok("rtn:bits=04", 4, 128, "rtn:bits=4,group=128");
}

static void expect_err(const char *spec, const char *msg)
{
	struct qs_scheme s;
	struct qs_diag d = {""};
	int rc = qs_scheme_parse(spec, &s, &d);
	if (rc != -QS_EUSAGE)
		fail_msg("'%s': got %d, want -QS_EUSAGE", spec, rc);
	if (strstr(d.msg, msg) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", spec, d.msg, msg);
	/* also without a diag */
	assert_int_equal(qs_scheme_parse(spec, &s, NULL), -QS_EUSAGE);
}

static void test_parse_errors(void **state)
{
	(void)state;
	/* the list comes from the registry, in its order */
	char known[512] = "", want[600];
	for (size_t i = 0; qs_scheme_registry[i]; i++)
		snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s", i ? ", " : "",
			 qs_scheme_registry[i]->name);
	static const char seeds[] = "rtn, adpq, daq, claq, gptq, gptq-clip, athena, gguf";
	assert_true(strncmp(known, seeds, strlen(seeds)) == 0);
	snprintf(want, sizeof(want), "unknown scheme 'foo' (known: %s)", known);
	expect_err("foo", want);
	expect_err("foo:bits=4", want);
	snprintf(want, sizeof(want), "unknown scheme '' (known: %s)", known);
	expect_err("", want);
	expect_err("RTN", "unknown scheme 'RTN'");
	expect_err("rtn:bits=5", "rtn: bits must be one of 2, 3, 4, 8 (got 5)");
	expect_err("rtn:bits=1", "(got 1)");
	expect_err("rtn:bits=16", "(got 16)");
	expect_err("rtn:bits=x", "rtn: bits must be one of 2, 3, 4, 8 (got 'x')");
	expect_err("rtn:bits=", "(got '')");
	expect_err("rtn:bits=-4", "(got '-4')");
	expect_err("rtn:bits=+4", "(got '+4')");
	expect_err("rtn:bits= 4", "(got ' 4')");
	expect_err("rtn:bits=4x", "(got '4x')");
	expect_err("rtn:bits=99999999999999999999", "bits must be one of");
	expect_err("rtn:bits=4294967300", "bits must be one of");
	expect_err("rtn:group=100", "rtn: group must be one of 32, 64, 128, 256 (got 100)");
	expect_err("rtn:group=0", "(got 0)");
	expect_err("rtn:foo=1", "rtn: unknown parameter 'foo' (known: bits, group)");
	expect_err("rtn:Bits=4", "unknown parameter 'Bits'");
	expect_err("rtn:bits", "rtn: expected key=value, got 'bits'");
	expect_err("rtn:=4", "expected key=value, got '=4'");
	expect_err("rtn:bits=4,,group=64", "expected key=value, got ''");
	expect_err("rtn:bits=4,", "expected key=value");
	expect_err("rtn:bits=4,bits=3", "rtn: parameter 'bits' given twice");
	expect_err("rtn:group=64,bits=4,group=64", "parameter 'group' given twice");
	expect_err("rtn:bits=4,group=64:x", "group must be one of");
	char longspec[200] = "rtn:bits=";
	memset(longspec + 9, '4', 150);
	expect_err(longspec, "too long");
}

static char seen[256];

static int collect(struct qs_scheme *s, const char *key, const char *val,
		   struct qs_diag *diag)
{
	(void)s;
	(void)diag;
	strcat(seen, key);
	strcat(seen, "=");
	strcat(seen, val);
	strcat(seen, ";");
	return strcmp(val, "stop") == 0 ? -42 : 0;
}

static void test_each_arg(void **state)
{
	(void)state;
	struct qs_scheme s = {.ops = &qs_scheme_rtn};
	struct qs_diag d = {""};

	seen[0] = '\0';
	assert_int_equal(qs_scheme_each_arg(&s, "", collect, &d), 0);
	assert_string_equal(seen, "");
	/* a key that is a prefix of another is not a repeat */
	assert_int_equal(qs_scheme_each_arg(&s, "a=1,ab=2,b=,c=x=y", collect, &d), 0);
	assert_string_equal(seen, "a=1;ab=2;b=;c=x=y;");
	seen[0] = '\0';
	assert_int_equal(qs_scheme_each_arg(&s, "ab=1,a=2", collect, &d), 0);
	assert_string_equal(seen, "ab=1;a=2;");
	assert_int_equal(qs_scheme_each_arg(&s, "a=1,ab=2,a=3", collect, &d), -QS_EUSAGE);
	assert_string_equal(d.msg, "rtn: parameter 'a' given twice");
	/* the callback's error stops the walk */
	seen[0] = '\0';
	assert_int_equal(qs_scheme_each_arg(&s, "a=stop,b=2", collect, &d), -42);
	assert_string_equal(seen, "a=stop;");

	unsigned v = 0;
	assert_int_equal(qs_scheme_parse_uint("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(qs_scheme_parse_uint("4294967295", &v), 0);
	assert_int_equal(v, 4294967295u);
	assert_int_equal(qs_scheme_parse_uint("4294967296", &v), -1);
	assert_int_equal(qs_scheme_parse_uint("", &v), -1);
	assert_int_equal(qs_scheme_parse_uint("1.5", &v), -1);
}

/* ---- the parameter tables (param.h) ---- */

/* The canonical text of every scheme's defaults is written into every
 * output file: these bytes must never change by accident. */
static void test_canonical_defaults(void **state)
{
	(void)state;
	static const char *const want[][2] = {
		{"rtn", "rtn:bits=4,group=128"},
		{"adpq", "adpq:bits=3,group=128,alpha=0.0175,search=8,scales=u8,layout=planes"},
		{"daq", "daq:bits=4,format=nf4,group=128,iters=100"},
		{"claq", "claq:bits=3.12,reshi=0.014,reslo=0.004,iters=16,actorder=1,damp=0.01"},
		{"gptq", "gptq:bits=4,group=128,damp=0.01,actorder=1,alpha=0"},
		{"athena", "athena:bits=3,group=128,damp=0.01,search=8"},
		{"adpq:alpha=0.0250,layout=tight",
		 "adpq:bits=3,group=128,alpha=0.025,search=8,scales=u8,layout=tight"},
		{"claq:bits=4,reslo=0.05", "claq:bits=4.00,reshi=0.014,reslo=0.05,iters=16,actorder=1,damp=0.01"},
		{"gptq:damp=1,alpha=0.1", "gptq:bits=4,group=128,damp=1,actorder=1,alpha=0.1"},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct qs_scheme s;
		struct qs_diag d = {""};
		if (qs_scheme_parse(want[i][0], &s, &d) != 0)
			fail_msg("'%s': %s", want[i][0], d.msg);
		assert_string_equal(s.text, want[i][1]);
	}
}

/* Every registered table is well formed, its defaults and canonical text
 * round-trip, every parameter rejects a bad value with a message naming
 * it, and qs_scheme_init rebuilds the same scheme from the struct. */
static void test_every_table(void **state)
{
	(void)state;
	for (size_t i = 0; qs_scheme_registry[i]; i++) {
		const struct qs_scheme_ops *ops = qs_scheme_registry[i];
		struct qs_scheme s, again;
		struct qs_diag d = {""};
		assert_non_null(ops->params);
		assert_int_equal(qs_scheme_parse(ops->name, &s, &d), 0);
		assert_true(qs_scheme_params_ok(&s));
		size_t n = 0;
		for (const struct qs_param *p = ops->params; p->name; p++, n++) {
			assert_true(p->offset + sizeof(unsigned) <= sizeof(s.params));
			assert_true(qs_param_valid(p, p->def));
			for (const struct qs_param *q = ops->params; q < p; q++)
				assert_string_not_equal(q->name, p->name);
			unsigned v = 12345;
			assert_int_equal(qs_scheme_param(&s, p->name, &v), 0);
			assert_int_equal(v, p->def);

			char spec[96], want[96];
			snprintf(spec, sizeof(spec), "%s:%s=77x", ops->name, p->name);
			snprintf(want, sizeof(want), "%s: %s must be ", ops->name, p->name);
			assert_int_equal(qs_scheme_parse(spec, &again, &d), -QS_EUSAGE);
			if (!strstr(d.msg, want) || !strstr(d.msg, "(got '77x')"))
				fail_msg("'%s': '%s'", spec, d.msg);
		}
		assert_true(n >= 1 && n <= QS_SCHEME_PARAMS_MAX);
		assert_int_equal(qs_scheme_parse(s.text, &again, &d), 0);
		assert_string_equal(again.text, s.text);
		assert_memory_equal(again.params, s.params, sizeof(s.params));
		assert_int_equal(qs_scheme_init(&again, ops, s.params, sizeof(s.params), &d), 0);
		assert_string_equal(again.text, s.text);
		/* an illegal stored value is refused, by init and by params_ok */
		unsigned bad[QS_SCHEME_PARAMS_MAX];
		memcpy(bad, s.params, sizeof(bad));
		bad[ops->params[0].offset / sizeof(unsigned)] = 999999;
		assert_int_equal(qs_scheme_init(&again, ops, bad, sizeof(bad), &d), -QS_EUSAGE);
		memcpy(again.params, bad, sizeof(bad));
		again.ops = ops;
		assert_false(qs_scheme_params_ok(&again));
		assert_int_equal(ops->payload_size(&again, 4, 256), UINT64_MAX);
	}
}

struct demo { unsigned frac, fixed1, count, pick, name; };

static const struct qs_param demo_table[] = {
	QS_PARAM_DECIMAL(struct demo, frac, 200, 0, 2500, 4, false, "a fraction"),
	QS_PARAM_DECIMAL(struct demo, fixed1, 31, 20, 40, 1, true, "one decimal"),
	QS_PARAM_RANGE(struct demo, count, 5, 0, 64, "a count"),
	QS_PARAM_ONE_OF(struct demo, pick, 4, "a choice", 2, 4, 8),
	QS_PARAM_NAME(struct demo, name, 0, "a name", "alpha", "beta"),
	QS_PARAM_END,
};

static void test_param_kinds(void **state)
{
	(void)state;
	const struct qs_param *frac = &demo_table[0], *fx = &demo_table[1];
	const struct qs_param *cnt = &demo_table[2], *pick = &demo_table[3];
	const struct qs_param *nm = &demo_table[4];
	unsigned v = 0;
	char buf[64];

	assert_true(qs_param_parse(frac, "0.02", &v));
	assert_int_equal(v, 200);
	assert_true(qs_param_parse(frac, "0.0200", &v));
	assert_int_equal(v, 200);
	assert_true(qs_param_parse(frac, "00.25", &v));
	assert_int_equal(v, 2500);
	assert_true(qs_param_parse(frac, "0", &v));
	assert_int_equal(v, 0);
	static const char *const bad[] = {"0.00001", "1.", ".5", "0.26", "", "-0.1", "0,1",
					  "0.1x", "99999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (qs_param_parse(frac, bad[i], &v))
			fail_msg("'%s' parsed", bad[i]);
	qs_param_format(frac, 200, buf, sizeof(buf));
	assert_string_equal(buf, "0.02");
	qs_param_format(frac, 0, buf, sizeof(buf));
	assert_string_equal(buf, "0");
	qs_param_format(frac, 10000, buf, sizeof(buf));
	assert_string_equal(buf, "1");
	qs_param_format(frac, 12345, buf, sizeof(buf));
	assert_string_equal(buf, "1.2345");
	qs_param_format(fx, 40, buf, sizeof(buf));
	assert_string_equal(buf, "4.0");
	assert_true(qs_param_parse(fx, "3", &v));
	assert_int_equal(v, 30);
	assert_false(qs_param_parse(fx, "3.15", &v));
	qs_param_describe(fx, buf, sizeof(buf));
	assert_string_equal(buf, "2.0..4.0 with at most one decimal");
	qs_param_describe(frac, buf, sizeof(buf));
	assert_string_equal(buf, "0..0.25 with at most 4 decimals");
	qs_param_describe(cnt, buf, sizeof(buf));
	assert_string_equal(buf, "0..64");
	assert_false(qs_param_parse(cnt, "65", &v));
	assert_true(qs_param_parse(cnt, "64", &v));
	qs_param_describe(pick, buf, sizeof(buf));
	assert_string_equal(buf, "one of 2, 4, 8");
	assert_false(qs_param_parse(pick, "3", &v));
	qs_param_describe(nm, buf, sizeof(buf));
	assert_string_equal(buf, "one of alpha, beta");
	assert_true(qs_param_parse(nm, "beta", &v));
	assert_int_equal(v, 1);
	assert_false(qs_param_parse(nm, "Beta", &v));
	qs_param_format(nm, 1, buf, sizeof(buf));
	assert_string_equal(buf, "beta");
}

/* The man page's SCHEMES section lists exactly the tables' parameters:
 * each parameter of a scheme is a ".B name" line in its entry, and each
 * ".B word" line there followed by a "= ..." line (a parameter's
 * documentation) names a parameter of the table. */
static bool is_param(const struct qs_scheme_ops *ops, const char *name)
{
	for (const struct qs_param *p = ops->params; p->name; p++)
		if (strcmp(p->name, name) == 0)
			return true;
	return false;
}

/* The word a ".B word" or ".RB ( word" line names, or "". */
static void bold_word(const char *line, char *word, size_t len)
{
	const char *p = NULL;
	size_t n = 0;
	if (strncmp(line, ".B ", 3) == 0)
		p = line + 3;
	else if (strncmp(line, ".RB ( ", 6) == 0)
		p = line + 6;
	word[0] = '\0';
	if (!p)
		return;
	/* '-' for scheme names such as gptq-clip */
	while ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= '0' && p[n] <= '9') || p[n] == '_' ||
	       p[n] == '-')
		n++;
	if (n == 0 || n >= len || (p[n] && p[n] != '\n'))
		return;
	memcpy(word, p, n);
	word[n] = '\0';
}

static void test_man_lists_parameters(void **state)
{
	(void)state;
	const char *top = getenv("top_srcdir");
	if (!top)
		skip();
	char path[1024];
	snprintf(path, sizeof(path), "%s/man/qshard-convert.1", top);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char lines[2048][256];
	size_t n = 0;
	while (n < 2048 && fgets(lines[n], sizeof(lines[n]), f))
		n++;
	fclose(f);

	for (size_t i = 0; qs_scheme_registry[i]; i++) {
		const struct qs_scheme_ops *ops = qs_scheme_registry[i];
		size_t a = 0, b;
		char word[64];
		bool in_schemes = false;
		for (; a + 1 < n; a++) {
			if (strncmp(lines[a], ".SH SCHEMES", 11) == 0)
				in_schemes = true;
			bold_word(lines[a + 1], word, sizeof(word));
			if (in_schemes && strncmp(lines[a], ".TP", 3) == 0 &&
			    strcmp(word, ops->name) == 0)
				break;
		}
		if (a + 1 >= n)
			fail_msg("%s: no entry for scheme '%s' under SCHEMES", path, ops->name);
		for (b = a + 1; b < n; b++)
			if (strncmp(lines[b], ".TP", 3) == 0 || strncmp(lines[b], ".SH", 3) == 0)
				break;
		for (const struct qs_param *p = ops->params; p->name; p++) {
			bool found = false;
			for (size_t j = a + 2; j < b && !found; j++) {
				bold_word(lines[j], word, sizeof(word));
				found = strcmp(word, p->name) == 0;
			}
			if (!found)
				fail_msg("%s: scheme %s: parameter '%s' is not documented", path,
					 ops->name, p->name);
		}
		for (size_t j = a + 2; j + 1 < b; j++) {
			bold_word(lines[j], word, sizeof(word));
			if (word[0] && strncmp(lines[j + 1], "= ", 2) == 0 && !is_param(ops, word))
				fail_msg("%s: scheme %s documents '%s', which it does not have",
					 path, ops->name, word);
		}
	}
}

/* prep_for_stats_only is a promise the pipeline relies on to skip the
 * preparation of a tensor that loads no statistics: for every scheme that
 * makes it, prepare() on no statistics then quantize_prep() gives
 * quantize()'s payload, byte for byte. */
static void test_prep_for_stats_only(void **state)
{
	(void)state;
	const size_t R = 6, C = 256;
	float *w = malloc(R * C * sizeof(float));
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < R * C; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		w[i] = (float)((double)(x >> 11) * 0x1p-53 - 0.5) * (i % 97 == 0 ? 40.0f : 1.0f);
	}
	size_t promised = 0;
	for (size_t n = 0; qs_scheme_registry[n]; n++) {
		const struct qs_scheme_ops *ops = qs_scheme_registry[n];
		if (!ops->prep_for_stats_only)
			continue;
		assert_non_null(ops->prepare);
		promised++;
		struct qs_scheme s;
		struct qs_diag d;
		assert_int_equal(qs_scheme_parse(ops->name, &s, &d), 0);
		uint64_t ps = ops->payload_size(&s, R, C);
		uint8_t *a = malloc(ps), *b = malloc(ps);
		void *scr = malloc(ops->scratch_size(&s, R, C));
		void *prep = calloc(1, ops->prep_size(&s, C) + 64);
		struct qs_tensor_stats st = {.name = "w", .cols = C};
		memset(a, 0x11, ps);
		memset(b, 0x22, ps);
		assert_int_equal(ops->prepare(&s, &st, prep, &d), 0);
		assert_int_equal(ops->quantize_prep(&s, prep, w, R, C, a, scr), 0);
		assert_int_equal(ops->quantize(&s, w, R, C, b, scr), 0);
		assert_memory_equal(a, b, ps);
		free(a);
		free(b);
		free(scr);
		free(prep);
	}
	assert_true(promised >= 2);  /* adpq, daq */
	free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry),
		cmocka_unit_test(test_prep_for_stats_only),
		cmocka_unit_test(test_parse_ok),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_each_arg),
		cmocka_unit_test(test_canonical_defaults),
		cmocka_unit_test(test_every_table),
		cmocka_unit_test(test_param_kinds),
		cmocka_unit_test(test_man_lists_parameters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
