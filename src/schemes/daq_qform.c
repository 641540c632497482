/* daq_qform.c - daq's group error e^T H e without O(n^2) per candidate
 * (daq_qform.h).  Plain linear algebra, no source to cite:
 *
 * With u the indicator of the non-NaN positions, L_b the base's level
 * vector (0 at NaN) and e_b = w - z_b u - s_b L_b, a candidate (z, s)
 * whose level vector is L = L_b + D (D non-zero at the k positions whose
 * code changed, NaN positions never counted) has
 *     e = e_b + delta,  delta = dz u + ds L_b - s D,  dz = z_b - z,
 *                                                     ds = s_b - s,
 * and, H symmetric,
 *     E = e^T H e = E_b + 2 delta^T H e_b + delta^T H delta
 *     delta^T H e_b   = dz u.He_b + ds L_b.He_b - s D.He_b
 *     delta^T H delta = dz^2 u.Hu + ds^2 L_b.HL_b + s^2 D^T H D
 *                       + 2 dz ds u.HL_b - 2 dz s D.Hu - 2 ds s D.HL_b.
 * The base keeps the vectors Hu, HL_b, He_b and their scalar products, so
 * a candidate costs the O(n) code comparison, three O(k) dot products and
 * the O(k^2) D^T H D.  The expansion is around the base, not around 0:
 * every term is of the size of the errors themselves, so a group with a
 * large offset and small errors (z^2 u.Hu against e^T H e) loses nothing
 * to cancellation, and no direct fallback is needed for a large k (at k =
 * n the sparse form costs n^2, as the direct one).  Moving the base to a
 * candidate adds H delta = dz Hu + ds HL_b - s HD to He_b and HD to HL_b
 * (HD: k columns of H, O(n k)), then recomputes e_b directly and every
 * scalar product from the vectors, so the scalars never drift; the
 * vectors carry one rounding per move.
 *
 * Determinism: everything is double, each sum runs in index order in
 * plain C (the build has -ffp-contract=off and no -ffast-math, so the
 * compiler neither fuses nor reorders; the vectorizable loops are
 * element-wise), and no BLAS: the value depends only on the inputs and
 * the sequence of calls, never on -T or the SIMD level. */
#include "daq_qform.h"

#include <math.h>
#include <string.h>

/* y[i] = sum_j H_ij v_j for three vectors at once, column by column (H
 * symmetric: column j is row j), each y[i] summed in j order. */
static void matvec3(const float *h, size_t n, const double *a, const double *b,
		    const double *c, double *ya, double *yb, double *yc)
{
	for (size_t i = 0; i < n; i++)
		ya[i] = yb[i] = yc[i] = 0.0;
	for (size_t j = 0; j < n; j++) {
		const float *hr = h + j * n;
		double aj = a[j], bj = b[j], cj = c[j];
		size_t i = 0;
		for (; i + 8 <= n; i += 8)
			for (size_t l = 0; l < 8; l++) {
				double v = (double)hr[i + l];
				ya[i + l] += v * aj;
				yb[i + l] += v * bj;
				yc[i + l] += v * cj;
			}
		for (; i < n; i++) {
			double v = (double)hr[i];
			ya[i] += v * aj;
			yb[i] += v * bj;
			yc[i] += v * cj;
		}
	}
}

static double dot(const double *a, const double *b, size_t n)
{
	double t = 0.0;
	for (size_t i = 0; i < n; i++)
		t += a[i] * b[i];
	return t;
}

/* The code interval of code c: t belongs to it iff t > lo && !(t > hi). */
static void code_bounds(const struct qs_daq_qform *q, unsigned c, float *lo, float *hi)
{
	*lo = c > 0 ? q->mid[c - 1] : -INFINITY;
	*hi = c < q->nmid ? q->mid[c] : INFINITY;
}

/* nearest_code's count of the midpoints below t (kernels.h), found by
 * walking from the base code c: the same number, the midpoints being
 * ascending and t not NaN. */
static unsigned walk_code(const struct qs_daq_qform *q, unsigned c, float t)
{
	while (c < q->nmid && t > q->mid[c])
		c++;
	while (c > 0 && !(t > q->mid[c - 1]))
		c--;
	return c;
}

void qs_daq_qform_init(struct qs_daq_qform *q, const float *h, const float *w,
		       const float *lev, const float *mid, unsigned nmid, size_t n, float z,
		       float s, float inv, const uint8_t *codes)
{
	double u[QS_DAQ_QFORM_MAX], e[QS_DAQ_QFORM_MAX];
	q->h = h;
	q->w = w;
	q->lev = lev;
	q->mid = mid;
	q->nmid = nmid;
	q->n = n;
	q->zb = z;
	q->sb = s;
	q->have_cand = 0;
	memcpy(q->cb, codes, n);
	for (size_t i = 0; i < n; i++) {
		q->ok[i] = w[i] == w[i];
		u[i] = q->ok[i] ? 1.0 : 0.0;
		q->lb[i] = q->ok[i] ? (double)lev[codes[i]] : 0.0;
		double y = z + s * q->lb[i];
		e[i] = q->ok[i] ? (double)w[i] - y : 0.0;
		code_bounds(q, codes[i], &q->blo[i], &q->bhi[i]);
	}
	matvec3(h, n, u, q->lb, e, q->hu, q->hl, q->he);
	q->uhu = dot(u, q->hu, n);
	q->eb = dot(e, q->he, n);
	q->uhe = dot(u, q->he, n);
	q->lhe = dot(q->lb, q->he, n);
	q->lhl = dot(q->lb, q->hl, n);
	q->uhl = dot(u, q->hl, n);
	(void)inv;
}

double qs_daq_qform_eval(struct qs_daq_qform *q, float z, float s, float inv, uint8_t *codes)
{
	size_t n = q->n, k = 0;
	const float *h = q->h, *w = q->w;
	/* the codes: a weight whose t stays inside its base code's interval
	 * keeps that code (the midpoints ascend, so nearest_code's count is
	 * unchanged); the others are walked from it.  A NaN weight (the only
	 * NaN t: z, inv and the other weights are finite) fails both
	 * comparisons and keeps nearest_code's 0 from the start; it never
	 * enters E. */
	uint8_t out[QS_DAQ_QFORM_MAX + 8];
	size_t i = 0;
	/* in blocks of 8 the compiler vectorizes (element-wise, so no
	 * result depends on whether it does) */
	for (; i + 8 <= n; i += 8)
		for (size_t l = 0; l < 8; l++) {
			float d = w[i + l] - z;
			float t = d * inv;
			out[i + l] = (uint8_t)((t <= q->blo[i + l]) | (t > q->bhi[i + l]));
		}
	for (; i < n; i++) {
		float d = w[i] - z;
		float t = d * inv;
		out[i] = (uint8_t)((t <= q->blo[i]) | (t > q->bhi[i]));
	}
	memset(out + n, 0, 8);
	memcpy(codes, q->cb, n);
	for (size_t j = 0; j < n; j += 8) {
		uint64_t any;
		memcpy(&any, out + j, 8);
		if (!any)
			continue;
		for (size_t p = j; p < j + 8 && p < n; p++) {
			if (!out[p])
				continue;
			float d = w[p] - z;
			unsigned c = walk_code(q, q->cb[p], d * inv);
			codes[p] = (uint8_t)c;
			if (c != q->cb[p]) {
				q->idx[k] = (uint8_t)p;
				q->nc[k] = (uint8_t)c;
				q->dv[k] = (double)q->lev[c] - q->lb[p];
				k++;
			}
		}
	}
	double dhe = 0.0, dhu = 0.0, dhl = 0.0, dhd = 0.0;
	for (size_t t = 0; t < k; t++) {
		size_t p = q->idx[t];
		double d = q->dv[t];
		dhe += d * q->he[p];
		dhu += d * q->hu[p];
		dhl += d * q->hl[p];
		/* D^T H D over the pairs (t, r <= t): the symmetric half */
		const float *hr = h + p * n;
		double off = 0.0;
		for (size_t r = 0; r < t; r++)
			off += q->dv[r] * (double)hr[q->idx[r]];
		dhd += d * ((2.0 * off) + (d * (double)hr[p]));
	}
	double sd = s, dz = q->zb - (double)z, ds = q->sb - sd;
	double t1 = ((dz * q->uhe) + (ds * q->lhe)) - (sd * dhe);
	double t2 = ((dz * dz) * q->uhu) + ((ds * ds) * q->lhl) + ((sd * sd) * dhd) +
		    ((2.0 * dz * ds) * q->uhl) - ((2.0 * dz * sd) * dhu) - ((2.0 * ds * sd) * dhl);
	double e = (q->eb + (2.0 * t1)) + t2;
	q->k = k;
	q->zc = z;
	q->sc = sd;
	q->ec = e;
	q->dhe = dhe;
	q->dhu = dhu;
	q->dhl = dhl;
	q->dhd = dhd;
	q->have_cand = 1;
	return e;
}

/* The base becomes the last candidate.  The vectors: H delta added to
 * He_b, HD to HL_b (O(n k)).  The scalars from the candidate's own
 * products in O(1), e.g. u.He' = u.He_b + u.H delta = uhe + dz uhu + ds
 * uhl - s D.Hu (H symmetric: u.HD = D.Hu). */
void qs_daq_qform_commit(struct qs_daq_qform *q)
{
	if (!q->have_cand)
		return;
	size_t n = q->n, k = q->k;
	double hd[QS_DAQ_QFORM_MAX];
	for (size_t i = 0; i < n; i++)
		hd[i] = 0.0;
	/* HD: k columns of H (rows, H symmetric), each hd[i] summed in t
	 * order; blocks of 8 for the vectorizer, element-wise */
	size_t t = 0;
	for (; t + 4 <= k; t += 4) {
		/* four columns a pass, added in t order: the sums of the
		 * one-column loop, with hd[i] kept in a register */
		const float *h0 = q->h + (size_t)q->idx[t] * n, *h1 = q->h + (size_t)q->idx[t + 1] * n;
		const float *h2 = q->h + (size_t)q->idx[t + 2] * n, *h3 = q->h + (size_t)q->idx[t + 3] * n;
		double d0 = q->dv[t], d1 = q->dv[t + 1], d2 = q->dv[t + 2], d3 = q->dv[t + 3];
		size_t i = 0;
		for (; i + 8 <= n; i += 8)
			for (size_t l = 0; l < 8; l++)
				hd[i + l] = (((hd[i + l] + ((double)h0[i + l] * d0)) +
					      ((double)h1[i + l] * d1)) +
					     ((double)h2[i + l] * d2)) +
					    ((double)h3[i + l] * d3);
		for (; i < n; i++)
			hd[i] = (((hd[i] + ((double)h0[i] * d0)) + ((double)h1[i] * d1)) +
				 ((double)h2[i] * d2)) +
				((double)h3[i] * d3);
	}
	for (; t < k; t++) {
		const float *hr = q->h + (size_t)q->idx[t] * n;
		double d = q->dv[t];
		size_t i = 0;
		for (; i + 8 <= n; i += 8)
			for (size_t l = 0; l < 8; l++)
				hd[i + l] += (double)hr[i + l] * d;
		for (; i < n; i++)
			hd[i] += (double)hr[i] * d;
	}
	double dz = q->zb - q->zc, ds = q->sb - q->sc, s = q->sc;
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		for (size_t l = 0; l < 8; l++) {
			q->he[i + l] += ((dz * q->hu[i + l]) + (ds * q->hl[i + l])) - (s * hd[i + l]);
			q->hl[i + l] += hd[i + l];
		}
	for (; i < n; i++) {
		q->he[i] += ((dz * q->hu[i]) + (ds * q->hl[i])) - (s * hd[i]);
		q->hl[i] += hd[i];
	}
	/* L.H delta and D.H delta, with delta = dz u + ds L_b - s D */
	double lhd = ((dz * q->uhl) + (ds * q->lhl)) - (s * q->dhl);
	double dhdl = ((dz * q->dhu) + (ds * q->dhl)) - (s * q->dhd);
	double uhe = ((q->uhe + (dz * q->uhu)) + (ds * q->uhl)) - (s * q->dhu);
	double lhe = ((q->lhe + lhd) + q->dhe) + dhdl;
	double lhl = (q->lhl + (2.0 * q->dhl)) + q->dhd;
	double uhl = q->uhl + q->dhu;
	q->uhe = uhe;
	q->lhe = lhe;
	q->lhl = lhl;
	q->uhl = uhl;
	q->eb = q->ec;
	for (size_t r = 0; r < k; r++) {
		size_t p = q->idx[r];
		q->cb[p] = q->nc[r];
		q->lb[p] = (double)q->lev[q->nc[r]];
		code_bounds(q, q->nc[r], &q->blo[p], &q->bhi[p]);
	}
	q->zb = q->zc;
	q->sb = q->sc;
	q->have_cand = 0;
}

double qs_daq_qform_direct(const float *h, const float *w, const float *lev, size_t n,
			   double z, double s, const uint8_t *codes)
{
	double e[QS_DAQ_QFORM_MAX], tot = 0.0;
	for (size_t i = 0; i < n; i++)
		e[i] = w[i] == w[i] ? (double)w[i] - (z + s * (double)lev[codes[i]]) : 0.0;
	for (size_t i = 0; i < n; i++) {
		double r = 0.0;
		for (size_t j = 0; j < n; j++)
			r += (double)h[i * n + j] * e[j];
		tot += e[i] * r;
	}
	return tot;
}
