/* kernels.h - the vectorizable inner loops behind every scheme, as a const
 * table of function pointers chosen once at run time (dispatch.c) from
 * cpuid and xgetbv, or forced by QSHARD_SIMD=ref|avx2|neon.
 *
 * Every table is complete: a variant without its own version of a kernel
 * points the entry at the scalar one (qs_ref_*), so no caller ever tests
 * for NULL (test_kernels and neon_driver check every entry of every
 * table).  The scalar definitions shared with the SIMD tails live once in
 * fp16_scalar.h, rtn_scalar.h and adpq_scalar.h.
 *
 * Invariant: every variant produces bit-identical results to the _ref
 * variant (same operations in the same order, no FMA contraction: every
 * file is built with FP_CFLAGS = -ffp-contract=off, Makefile.am),
 * so the output file never depends on the machine.
 */
#ifndef QS_KERNELS_H
#define QS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* adpq row parameters and buffers (adpq.c). */
#define QS_ADPQ_SCALES_F16 1u  /* fp16 group meta instead of u8 under row super-scales */
#define QS_ADPQ_FOLD 2u        /* inlier codes folded around the group's zero code */

struct qs_adpq_params {
	unsigned bits;       /* 2, 3 or 4 */
	unsigned group;      /* 64, 128 or 256 */
	unsigned alpha_e4;   /* outlier fraction in units of 1e-4, 0..2500 */
	unsigned search;     /* clipped ranges tried besides the full one, 0..16 */
	unsigned flags;      /* QS_ADPQ_* */
};

struct qs_adpq_row {
	/* u8 meta: fp16 units of the inlier step, inlier min, outlier step
	 * and outlier min; zero with QS_ADPQ_SCALES_F16. */
	uint16_t super[4];
	/* 4 x ngroups: inlier step, inlier min, outlier step, outlier min
	 * (u8 codes, or fp16 bits with QS_ADPQ_SCALES_F16). */
	uint16_t *meta;
	uint8_t *codes;      /* n stored codes */
	uint8_t *idx;        /* the row's outlier in-group indices, ascending per group */
	uint16_t *counts;    /* outliers of each group (ngroups; they sum to the row's K) */
	float *tmp;          /* quantize scratch: 4 x ngroups */
	uint8_t *mask;       /* quantize scratch: n */
};

/* Source element encodings the decode-and-check kernels read. */
enum qs_src_kind { QS_SRC_KIND_BF16 = 0, QS_SRC_KIND_F16 = 1, QS_SRC_KIND_F32 = 2 };
/* Largest group rtn_quantize_src decodes into its L1 buffer. */
#define QS_RTN_SRC_MAX_GROUP 1024u

struct qs_kernels {
	const char *name;  /* "ref", "avx2", "avx512", "neon" */

	/* Source dtype to f32 (bf16 and f16 widen exactly; denormals, Inf and
	 * NaN are kept). */
	void (*bf16_to_f32)(const uint16_t *src, float *dst, size_t n);
	void (*f16_to_f32)(const uint16_t *src, float *dst, size_t n);
	/* f32 to bf16/f16 with round-to-nearest-even (NaN stays NaN). */
	void (*f32_to_bf16)(const float *src, uint16_t *dst, size_t n);
	void (*f32_to_f16)(const float *src, uint16_t *dst, size_t n);

	/* Number of NaN/Inf values in x[n]. */
	size_t (*count_nonfinite)(const float *x, size_t n);
	/* One pass over n source elements of enum qs_src_kind `kind`
	 * (little-endian, any alignment): dst = their f32 values (as
	 * bf16_to_f32 / f16_to_f32 / a copy) and the return value = how many
	 * are NaN/Inf.  Schemes get their f32 input from this, a group or a
	 * chunk at a time; decode_scalar.h is the definition. */
	size_t (*decode_checked)(unsigned kind, const void *src, float *dst, size_t n);

	/* rtn group quantization: for each group of `group` weights of w[n]
	 * (the last may be shorter), computes the fp16 scale and min (see
	 * rtn.c for the exact definition) into scale[] and min[] and codes in
	 * 0..2^bits-1 into codes[n].  Returns the number of groups whose range
	 * overflowed fp16 (0 when all fit). */
	size_t (*rtn_quantize_row)(const float *w, size_t n, unsigned group,
				   unsigned bits, uint16_t *scale, uint16_t *min,
				   uint8_t *codes);
	/* rtn_quantize_row straight from n source elements of `kind`: each
	 * group is decoded (decode_checked) into a buffer in L1 and quantized
	 * there, so the chunk is read once and no f32 copy of it exists.  The
	 * NaN/Inf found are added to *nonfinite; with sanitize they are
	 * replaced first (qs_sanitize_scalar, what --allow-nonfinite asks),
	 * without it the group is quantized as it is (the caller discards a
	 * chunk that holds any).  Same results as decode_checked +
	 * rtn_quantize_row; group <= QS_RTN_SRC_MAX_GROUP. */
	size_t (*rtn_quantize_src)(unsigned kind, const void *src, size_t n, unsigned group,
				   unsigned bits, int sanitize, uint16_t *scale, uint16_t *min,
				   uint8_t *codes, size_t *nonfinite);
	/* rtn dequantization of one row from codes and fp16 scale/min. */
	void (*rtn_dequantize_row)(const uint8_t *codes, size_t n, unsigned group,
				   const uint16_t *scale, const uint16_t *min,
				   float *w);

	/* Tight LSB-first bit packing of codes[n] (each < 2^bits) into a
	 * bitstream starting at bit offset bitpos of dst; dst bytes beyond the
	 * written bits are left as they are except the partially written last
	 * byte, whose unused high bits are zero.  bits in 1..8. */
	void (*pack_bits)(const uint8_t *codes, size_t n, unsigned bits,
			  uint8_t *dst, uint64_t bitpos);
	void (*unpack_bits)(const uint8_t *src, uint64_t bitpos, size_t n,
			    unsigned bits, uint8_t *codes);

	/* adpq (see adpq.c and ref_adpq.c for the exact definition).  A SIMD
	 * variant takes them over one at a time, pointing the others at the
	 * qs_ref_ versions. */
	size_t (*adpq_quantize_row)(const float *w, size_t n,
				    const struct qs_adpq_params *p,
				    struct qs_adpq_row *r);
	/* Returns the number of outlier indices that fall outside their group
	 * (corrupt payload; those are skipped). */
	size_t (*adpq_dequantize_row)(const struct qs_adpq_row *r, size_t n,
				      const struct qs_adpq_params *p, float *w);
	/* Bit-plane packing of codes[n] (each < 2^bits): plane p holds bit p
	 * of every code, 8 codes a byte LSB-first, ceil(n/8) bytes starting at
	 * dst + p*plane_stride (unused high bits of a last byte zero). */
	void (*pack_planes)(const uint8_t *codes, size_t n, unsigned bits,
			    uint8_t *dst, size_t plane_stride);
	void (*unpack_planes)(const uint8_t *src, size_t plane_stride, size_t n,
			      unsigned bits, uint8_t *codes);

	/* daq and claq (ref_daq.c, ref_claq.c are the definitions).
	 * nearest_code: codes[i] = the number of k < nmid with t > mid[k],
	 * t = (x[i] - z) * inv (two roundings), mid ascending, nmid <= 31; so
	 * a NaN gets 0 and ties go to the lower code. */
	void (*nearest_code)(const float *x, size_t n, float z, float inv,
			     const float *mid, unsigned nmid, uint8_t *codes);
	/* daq_eval: codes as nearest_code with nlev - 1 midpoints (nlev <=
	 * 16), then per element y = z + s*lev[c], e = x - y, v = e*imp[i] (e
	 * when imp is NULL; e = v = 0 for a NaN x) and out = {sum v*e, sum
	 * v*lev[c], sum v}, each summed in 8 lanes (element i into lane i % 8,
	 * in order) combined as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)). */
	void (*daq_eval)(const float *x, const float *imp, size_t n, float z, float s,
			 float inv, const float *lev, const float *mid, unsigned nlev,
			 uint8_t *codes, float out[3]);
	/* daq_range: over the non-NaN x[i] (-0 taken as +0), lo[0..k) = the k
	 * smallest ascending and hi[0..k) = the k largest descending, padded
	 * with +Inf / -Inf when fewer; returns their count. */
	size_t (*daq_range)(const float *x, size_t n, unsigned k, float *lo, float *hi);

	/* gguf (gguf_impl.h is the definition; gguf_blocks.h the types):
	 * quantize nblocks consecutive blocks of a row of enum qs_gguf_type
	 * `type` from x[nblocks * block weights] with per-weight error
	 * weights imp[] (NULL: all 1) into ggml's block layout at dst;
	 * returns the number of blocks whose fp16 scales overflowed (left
	 * zeroed).  Dequantization is ggml's arithmetic, bit for bit. */
	size_t (*gguf_quantize_row)(unsigned type, const float *x, const float *imp,
				    size_t nblocks, uint8_t *dst);
	void (*gguf_dequantize_row)(unsigned type, const uint8_t *src, size_t nblocks, float *y);
};

/* The table for this machine (or QSHARD_SIMD), resolved once. */
const struct qs_kernels *qs_kernels_get(void);
/* A specific level ("ref", "avx2", "avx512", "neon"), or NULL when not built or not
 * supported by this CPU; tests use it to compare variants. */
const struct qs_kernels *qs_kernels_by_name(const char *name);

/* The table that QSHARD_SIMD=request selects: request when built and
 * supported, else (NULL, unknown or unsupported) the best available.
 * qs_kernels_get() resolves this once from the environment; tests call it
 * directly. */
const struct qs_kernels *qs_kernels_choose(const char *request);

extern const struct qs_kernels qs_kernels_ref;
/* The SIMD tables the build holds (dispatch.c hands them out only where
 * the CPU runs them; test_kernels checks every one is complete). */
#if defined(QS_HAVE_AVX2)
extern const struct qs_kernels qs_kernels_avx2;
#endif
#if defined(QS_HAVE_NEON)
extern const struct qs_kernels qs_kernels_neon;
#endif

/* The scalar adpq kernels (ref_adpq.c), for ref.c's table and as fallbacks. */
size_t qs_ref_adpq_quantize_row(const float *w, size_t n, const struct qs_adpq_params *p,
				struct qs_adpq_row *r);
size_t qs_ref_adpq_dequantize_row(const struct qs_adpq_row *r, size_t n,
				  const struct qs_adpq_params *p, float *w);
/* quantize_row's phase 2 (group meta and super-scales from the ranges in
 * r->tmp), for SIMD variants; SIZE_MAX when the row's super-scales overflow. */
size_t qs_ref_adpq_grids(size_t ng, const struct qs_adpq_params *p, struct qs_adpq_row *r);
void qs_ref_pack_planes(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst,
			size_t plane_stride);
void qs_ref_unpack_planes(const uint8_t *src, size_t plane_stride, size_t n,
			  unsigned bits, uint8_t *codes);
/* The AVX2 adpq kernels (x86/avx2_adpq.c), for avx2.c's table. */
size_t qs_avx2_adpq_quantize_row(const float *w, size_t n, const struct qs_adpq_params *p,
				 struct qs_adpq_row *r);
void qs_avx2_pack_planes(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst,
			 size_t plane_stride);
/* The AVX-512 adpq kernels (x86/avx512_adpq.c), for avx512.c's table. */
size_t qs_avx512_adpq_quantize_row(const float *w, size_t n, const struct qs_adpq_params *p,
				   struct qs_adpq_row *r);
void qs_avx512_pack_planes(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst,
			   size_t plane_stride);
/* The NEON adpq kernels (arm/neon_adpq.c), for neon.c's table. */
size_t qs_neon_adpq_quantize_row(const float *w, size_t n, const struct qs_adpq_params *p,
				 struct qs_adpq_row *r);
size_t qs_neon_adpq_dequantize_row(const struct qs_adpq_row *r, size_t n,
				   const struct qs_adpq_params *p, float *w);
void qs_neon_pack_planes(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst,
			 size_t plane_stride);
void qs_neon_unpack_planes(const uint8_t *src, size_t plane_stride, size_t n,
			   unsigned bits, uint8_t *codes);
/* The scalar daq/claq kernels (ref_daq.c, ref_claq.c) and AVX2 ones
 * (x86/avx2_daq.c, x86/avx2_claq.c). */
void qs_ref_nearest_code(const float *x, size_t n, float z, float inv, const float *mid,
			 unsigned nmid, uint8_t *codes);
void qs_ref_daq_eval(const float *x, const float *imp, size_t n, float z, float s, float inv,
		     const float *lev, const float *mid, unsigned nlev, uint8_t *codes,
		     float out[3]);
void qs_avx2_nearest_code(const float *x, size_t n, float z, float inv, const float *mid,
			  unsigned nmid, uint8_t *codes);
void qs_avx2_daq_eval(const float *x, const float *imp, size_t n, float z, float s, float inv,
		      const float *lev, const float *mid, unsigned nlev, uint8_t *codes,
		      float out[3]);
size_t qs_ref_daq_range(const float *x, size_t n, unsigned k, float *lo, float *hi);
size_t qs_avx2_daq_range(const float *x, size_t n, unsigned k, float *lo, float *hi);
/* The gguf kernels per instance (ref_gguf.c, x86/avx2_gguf.c, arm/neon_gguf.c). */
size_t qs_ref_gguf_quantize_row(unsigned type, const float *x, const float *imp, size_t nblocks,
				uint8_t *dst);
void qs_ref_gguf_dequantize_row(unsigned type, const uint8_t *src, size_t nblocks, float *y);
size_t qs_avx2_gguf_quantize_row(unsigned type, const float *x, const float *imp, size_t nblocks,
				 uint8_t *dst);
void qs_avx2_gguf_dequantize_row(unsigned type, const uint8_t *src, size_t nblocks, float *y);
size_t qs_neon_gguf_quantize_row(unsigned type, const float *x, const float *imp, size_t nblocks,
				 uint8_t *dst);
void qs_neon_gguf_dequantize_row(unsigned type, const uint8_t *src, size_t nblocks, float *y);
/* Outliers in a row of n weights: round(alpha_e4 * n / 10^4), halves up. */
size_t qs_adpq_k(unsigned alpha_e4, size_t n);
/* AdpQ's separation of one row (ref_adpq.c): the row's K = qs_adpq_k()
 * weights of largest |w| (ties to the lower index, NaN as 0), as per-group
 * counts in r->counts and in-group indices in r->idx.  Every variant calls
 * this one function, so the outlier set is the same on every ISA. */
void qs_adpq_select_row(const float *w, size_t n, const struct qs_adpq_params *p,
			struct qs_adpq_row *r);

/* Scalar conversions, shared by every variant for tails. */
float qs_bf16_to_f32(uint16_t h);
float qs_f16_to_f32(uint16_t h);
uint16_t qs_f32_to_bf16(float f);
uint16_t qs_f32_to_f16(float f);

#endif /* QS_KERNELS_H */
