/* daq_qform.h - daq's output error E = e^T H e of one group, evaluated
 * incrementally against a base point (daq_qform.c has the algebra).
 *
 * A candidate is (z, s, codes) and its error vector e_i = w_i - z -
 * s*lev[codes[i]] (0 where w_i is NaN), all in double.  The evaluator
 * keeps a base candidate b with H e_b, H L_b (L_i = lev[codes[i]]) and
 * H u (u_i = 1 on the non-NaN positions); a candidate whose codes differ
 * from the base's in k positions costs O(n + k^2), moving the base to it
 * O(n k).  Not thread-shared: one per group being quantized, on the
 * caller's stack. */
#ifndef QS_DAQ_QFORM_H
#define QS_DAQ_QFORM_H

#include <stddef.h>
#include <stdint.h>

#define QS_DAQ_QFORM_MAX 128u

struct qs_daq_qform {
	const float *h;    /* n x n, row-major, symmetric */
	const float *w;    /* the group's n weights */
	const float *lev;  /* level table, indexed by code */
	const float *mid;  /* the nmid ascending midpoints between levels */
	unsigned nmid;
	size_t n;
	uint8_t ok[QS_DAQ_QFORM_MAX];   /* w_i is not NaN */
	double hu[QS_DAQ_QFORM_MAX];    /* H u */
	double hl[QS_DAQ_QFORM_MAX];    /* H L_b */
	double he[QS_DAQ_QFORM_MAX];    /* H e_b */
	double lb[QS_DAQ_QFORM_MAX];    /* L_b (0 at NaN) */
	uint8_t cb[QS_DAQ_QFORM_MAX];   /* the base's codes */
	float blo[QS_DAQ_QFORM_MAX];    /* mid[cb - 1] (-Inf at code 0) */
	float bhi[QS_DAQ_QFORM_MAX];    /* mid[cb] (+Inf at the top code) */
	double zb, sb;
	double eb, uhu, uhe, lhe, lhl, uhl;  /* e_b^T H e_b, u^T H u, ... */
	/* the last candidate evaluated, for qs_daq_qform_commit */
	size_t k;
	uint8_t idx[QS_DAQ_QFORM_MAX];  /* positions whose code differs */
	double dv[QS_DAQ_QFORM_MAX];    /* lev[new code] - lev[base code] there */
	uint8_t nc[QS_DAQ_QFORM_MAX];   /* its codes there */
	double zc, sc, ec;
	double dhe, dhu, dhl, dhd;  /* D.He_b, D.Hu, D.HL_b, D^T H D */
	int have_cand;
};

/* Makes (z, s, codes) the base, from H directly: O(n^2).  n <= 128;
 * codes are nearest_code's (kernels.h) for (z, inv) under mid[nmid]. */
void qs_daq_qform_init(struct qs_daq_qform *q, const float *h, const float *w,
		       const float *lev, const float *mid, unsigned nmid, size_t n, float z,
		       float s, float inv, const uint8_t *codes);

/* The candidate (z, s): its codes into codes[n], exactly nearest_code's
 * for (z, inv) (only the elements that leave their base code's interval
 * are searched), and its E relative to the base: O(n + k^2). */
double qs_daq_qform_eval(struct qs_daq_qform *q, float z, float s, float inv, uint8_t *codes);

/* Makes the candidate last evaluated the base: O(n k). */
void qs_daq_qform_commit(struct qs_daq_qform *q);

/* The definition: sum_ij e_i H_ij e_j in double, O(n^2) (tests). */
double qs_daq_qform_direct(const float *h, const float *w, const float *lev, size_t n,
			   double z, double s, const uint8_t *codes);

#endif /* QS_DAQ_QFORM_H */
