/* test_scheme.c - the scheme registry and "NAME[:key=val,...]" parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

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
	assert_int_equal(s.bits, bits);
	assert_int_equal(s.group, group);
	assert_string_equal(s.text, text);
	/* the canonical text parses back to the same scheme */
	struct qs_scheme again;
	assert_int_equal(qs_scheme_parse(s.text, &again, NULL), 0);
	assert_int_equal(again.bits, bits);
	assert_int_equal(again.group, group);
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
	expect_err("foo", "unknown scheme 'foo' (known: rtn, adpq, daq, claq, gptq, athena, gguf)");
	expect_err("foo:bits=4", "unknown scheme 'foo' (known: rtn, adpq, daq, claq, gptq, athena, gguf)");
	expect_err("", "unknown scheme '' (known: rtn, adpq, daq, claq, gptq, athena, gguf)");
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry),
		cmocka_unit_test(test_parse_ok),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_each_arg),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
