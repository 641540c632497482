/* dispatch.c - picks the kernel table once per process: the best variant
 * that was built and that both the CPU and the OS support, unless
 * QSHARD_SIMD=ref|avx2|avx512|neon asks for a specific one (tests and benchmarks).
 * Every variant gives bit-identical output (kernels.h), so the choice only
 * changes speed.
 *
 * A SIMD variant lives in its own file compiled with its ISA's flags and is
 * announced by the build with QS_HAVE_AVX2 / QS_HAVE_AVX512 / QS_HAVE_NEON.
 * The AVX-512 file lists only the kernels it takes over; the table handed
 * out is completed here from the AVX2 one, so it too has every entry.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* AVX-512's own kernels; the entries it leaves NULL are completed from
 * the AVX2 table below (avx512_table), so no caller sees a NULL */
#if defined(QS_HAVE_AVX512) && defined(QS_HAVE_AVX2)
extern const struct qs_kernels qs_kernels_avx512_own;
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* XCR0 is readable only once the OS has set CR4.OSXSAVE (CPUID.1:ECX bit
 * 27), which cpu_has_avx2 checks first.  Raw opcode so no -mxsave is
 * needed. */
static uint64_t read_xcr0(void)
{
	uint32_t lo, hi;
	__asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

/* AVX2 + FMA + F16C (the x86-64-v3 subset our kernels use), and an OS that
 * saves the YMM registers on context switch: XCR0 bit 1 (SSE state) and
 * bit 2 (AVX upper halves).  Without the OS part, the instructions exist
 * but fault (#UD) or silently lose state. */
static bool cpu_has_avx2(void)
{
	unsigned a, b, c, d;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return false;
	const unsigned need1 = (1u << 12)   /* FMA */
			     | (1u << 27)   /* OSXSAVE */
			     | (1u << 28)   /* AVX */
			     | (1u << 29);  /* F16C */
	if ((c & need1) != need1)
		return false;
	if ((read_xcr0() & 0x6u) != 0x6u)
		return false;
	if (__get_cpuid_max(0, NULL) < 7)
		return false;
	__cpuid_count(7, 0, a, b, c, d);
	return (b & (1u << 5)) != 0;  /* AVX2 */
}

/* x86-64-v4's part our AVX-512 file uses: AVX512F, BW and VL (CPUID.7:EBX
 * bits 16, 30, 31), POPCNT (CPUID.1:ECX bit 23), on top of AVX2; and an
 * OS that saves the opmask and ZMM state: XCR0 bits 5-7 besides 1-2. */
static bool cpu_has_avx512(void)
{
	unsigned a, b, c, d;
	if (!cpu_has_avx2() || !__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 23)))
		return false;
	if ((read_xcr0() & 0xe6u) != 0xe6u)
		return false;
	__cpuid_count(7, 0, a, b, c, d);
	const unsigned need7 = (1u << 16) | (1u << 30) | (1u << 31);
	return (b & need7) == need7;
}
#else
static bool cpu_has_avx2(void)
{
	return false;
}

static bool cpu_has_avx512(void)
{
	return false;
}
#endif

#if defined(QS_HAVE_AVX512) && defined(QS_HAVE_AVX2)
/* qs_kernels_avx512_own, its NULL entries taken from the AVX2 table
 * (struct qs_kernels holds only pointers: test_kernels checks it). */
static struct qs_kernels avx512_table;
static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;

static void avx512_complete(void)
{
	const size_t nw = sizeof(struct qs_kernels) / sizeof(void *);
	for (size_t w = 0; w < nw; w++) {
		void *own, *base;
		memcpy(&own, (const char *)&qs_kernels_avx512_own + w * sizeof(void *), sizeof(own));
		memcpy(&base, (const char *)&qs_kernels_avx2 + w * sizeof(void *), sizeof(base));
		memcpy((char *)&avx512_table + w * sizeof(void *), own ? &own : &base, sizeof(own));
	}
}
#endif

const struct qs_kernels *qs_kernels_by_name(const char *name)
{
	if (!name)
		return NULL;
	if (strcmp(name, "ref") == 0)
		return &qs_kernels_ref;
#if defined(QS_HAVE_AVX2)
	if (strcmp(name, "avx2") == 0 && cpu_has_avx2())
		return &qs_kernels_avx2;
#endif
#if defined(QS_HAVE_AVX512) && defined(QS_HAVE_AVX2)
	if (strcmp(name, "avx512") == 0 && cpu_has_avx512()) {
		pthread_once(&avx512_once, avx512_complete);
		return &avx512_table;
	}
#endif
#if defined(QS_HAVE_NEON) && defined(__aarch64__)
	/* Advanced SIMD is mandatory on AArch64: nothing to probe */
	if (strcmp(name, "neon") == 0)
		return &qs_kernels_neon;
#endif
	(void)cpu_has_avx2;
	(void)cpu_has_avx512;
	return NULL;
}

/* Best first. */
static const char *const preference[] = {"avx512", "avx2", "neon", "ref"};

const struct qs_kernels *qs_kernels_choose(const char *request)
{
	const struct qs_kernels *k = NULL;

	if (request && *request)
		k = qs_kernels_by_name(request);
	for (size_t i = 0; !k && i < sizeof(preference) / sizeof(preference[0]); i++)
		k = qs_kernels_by_name(preference[i]);
	return k ? k : &qs_kernels_ref;
}

static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;
static const struct qs_kernels *resolved;

static void resolve(void)
{
	resolved = qs_kernels_choose(getenv("QSHARD_SIMD"));
}

const struct qs_kernels *qs_kernels_get(void)
{
	pthread_once(&resolve_once, resolve);
	return resolved;
}
