/* fuzz_hessian.c - libFuzzer harness for the --hessian reader.
 *
 * The input is a whole safetensors Hessian file.  It is written to an
 * in-memory file, opened with qs_hessian_open and, when that succeeds,
 * asked for a few Hugging Face names (under NAME, NAME.hessian or
 * NAME.hessian_diag) at a few column counts.  A promise of calib.h that
 * does not hold aborts, which the fuzzer reports.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "calib.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                             \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "%s:%d: broken promise: %s\n", __FILE__, \
				__LINE__, #cond);                               \
			abort();                                                \
		}                                                               \
	} while (0)

/* The harness never allocates more than this for one answer. */
#define MAX_BUF (64u << 20)
/* Floats past the end of the answer that must stay untouched (ASan only
 * sees writes past the whole allocation; the plain replay sees these). */
#define GUARD 16
#define GUARD_BITS 0x7fc0dead

static const char *const names[] = {
	"model.layers.0.self_attn.q_proj.weight",
	"lm_head.weight",
	"model.embed_tokens.weight",
	"model.layers.1.mlp.down_proj.weight",
};
/* 2048 is the largest the seeds can hold (a diagonal; a full 2048 x 2048
 * Hessian is 16 MiB, far past -max_len) */
static const uint64_t cols_list[] = {1, 16, 2048};

static int memfd = -1;
static char path[64];
static char quoted_base[40];

static void setup(void)
{
	memfd = memfd_create("fuzz_hessian", MFD_CLOEXEC);
	if (memfd < 0) {
		perror("memfd_create");
		abort();
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	/* messages name the file by its path or by its base name: either
	 * way the base name is followed by the closing quote */
	snprintf(quoted_base, sizeof(quoted_base), "%s'", qs_basename(path));
}

static bool guard_ok(const float *g)
{
	for (size_t i = 0; i < GUARD; i++) {
		uint32_t u;
		memcpy(&u, &g[i], 4);
		if (u != GUARD_BITS)
			return false;
	}
	return true;
}

/* One buffer per column count, kept across runs: a fresh 16 MiB malloc
 * and free per run cost ASan more than the reader itself.  Each is exactly
 * the answer plus the guard, so ASan still sees writes past it. */
static float *bufs[sizeof(cols_list) / sizeof(*cols_list)];

static void ask(const struct qs_hessian *h, size_t c)
{
	uint64_t cols = cols_list[c], sq, n, bytes;
	if (!qs_mul_u64(cols, cols, &sq) || !qs_add_u64(sq, GUARD, &n) ||
	    !qs_mul_u64(n, sizeof(float), &bytes) || bytes > MAX_BUF)
		return;
	if (!bufs[c] && !(bufs[c] = malloc((size_t)bytes)))
		abort();
	float *dst = bufs[c];
	/* so what a previous run left cannot pass for zeros the reader owed
	 * (skipped for the 16 MiB one, where that would cost more than
	 * the fresh malloc did) */
	if (sq <= 65536)
		memset(dst, 0xff, (size_t)sq * sizeof(float));
	for (size_t i = 0; i < GUARD; i++) {
		uint32_t u = GUARD_BITS;
		memcpy(&dst[sq + i], &u, 4);
	}
	for (size_t k = 0; k < sizeof(names) / sizeof(*names); k++) {
		struct qs_diag d = {{0}};
		bool diag_only = true;
		int rc = qs_hessian_get(h, names[k], cols, dst, &diag_only, &d);
		CHECK(rc == 0 || rc == 1 || rc < 0);
		CHECK(guard_ok(dst + sq));
		CHECK(rc == 1 || !diag_only);
		if (rc == 1 && diag_only) {
			/* a diagonal entry gives a diagonal matrix */
			for (uint64_t i = 0; i < cols; i++)
				for (uint64_t j = 0; j < cols; j++)
					CHECK(i == j || dst[i * cols + j] == 0.0f);
		} else if (rc < 0) {
			CHECK(d.msg[0]);
			if (rc != -ENOMEM) {
				CHECK(strstr(d.msg, quoted_base) != NULL);
				CHECK(strstr(d.msg, names[k]) != NULL);
			}
		}
	}
	/* stacked MoE experts: per-expert entries, stacked or by name */
	for (uint64_t e = 0; e < 3; e++) {
		static const char stacked[] = "model.layers.0.mlp.experts.up_proj.weight";
		struct qs_diag d = {{0}};
		bool diag_only = true;
		(void)qs_hessian_has_experts(h, stacked);
		int rc = qs_hessian_get_expert(h, stacked, e, 2, cols, dst, &diag_only, &d);
		CHECK(rc == 0 || rc == 1 || rc < 0);
		CHECK(guard_ok(dst + sq));
		CHECK(rc == 1 || !diag_only);
		CHECK(rc >= 0 || d.msg[0]);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (memfd < 0)
		setup();
	if (ftruncate(memfd, 0) != 0 ||
	    (size && pwrite(memfd, data, size, 0) != (ssize_t)size)) {
		perror("memfd write");
		abort();
	}
	struct qs_hessian *h = (struct qs_hessian *)&h;
	struct qs_diag d = {{0}};
	int rc = qs_hessian_open(path, &h, &d);
	if (rc != 0) {
		CHECK(rc < 0 && h == NULL);
		CHECK(d.msg[0]);
		if (rc != -ENOMEM)
			CHECK(strstr(d.msg, quoted_base) != NULL);
		return 0;
	}
	CHECK(h != NULL);
	for (size_t c = 0; c < sizeof(cols_list) / sizeof(*cols_list); c++)
		ask(h, c);
	qs_hessian_free(h);
	return 0;
}
