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
		for (size_t i = 0; i < n; i++) {
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

/* e_b and the scalar products of the base from its vectors: O(n). */
static void base_scalars(struct qs_daq_qform *q)
{
	double u[QS_DAQ_QFORM_MAX], e[QS_DAQ_QFORM_MAX];
	size_t n = q->n;
	for (size_t i = 0; i < n; i++) {
		u[i] = q->ok[i] ? 1.0 : 0.0;
		double y = q->zb + q->sb * q->lb[i];
		e[i] = q->ok[i] ? (double)q->w[i] - y : 0.0;
	}
	q->eb = dot(e, q->he, n);
	q->uhe = dot(u, q->he, n);
	q->lhe = dot(q->lb, q->he, n);
	q->lhl = dot(q->lb, q->hl, n);
	q->uhl = dot(u, q->hl, n);
}

void qs_daq_qform_init(struct qs_daq_qform *q, const float *h, const float *w,
		       const float *lev, size_t n, double z, double s, const uint8_t *codes)
{
	double u[QS_DAQ_QFORM_MAX], e[QS_DAQ_QFORM_MAX];
	q->h = h;
	q->w = w;
	q->lev = lev;
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
	}
	matvec3(h, n, u, q->lb, e, q->hu, q->hl, q->he);
	q->uhu = dot(u, q->hu, n);
	base_scalars(q);
}

double qs_daq_qform_eval(struct qs_daq_qform *q, double z, double s, const uint8_t *codes)
{
	size_t n = q->n, k = 0;
	const float *h = q->h;
	for (size_t i = 0; i < n; i++)
		if (q->ok[i] && codes[i] != q->cb[i]) {
			q->idx[k] = (uint8_t)i;
			q->dv[k] = (double)q->lev[codes[i]] - q->lb[i];
			k++;
		}
	double dhe = 0.0, dhu = 0.0, dhl = 0.0, dhd = 0.0;
	for (size_t t = 0; t < k; t++) {
		size_t i = q->idx[t];
		double d = q->dv[t];
		dhe += d * q->he[i];
		dhu += d * q->hu[i];
		dhl += d * q->hl[i];
		/* D^T H D over the pairs (t, r <= t): the symmetric half */
		const float *hr = h + i * n;
		double off = 0.0;
		for (size_t r = 0; r < t; r++)
			off += q->dv[r] * (double)hr[q->idx[r]];
		dhd += d * ((2.0 * off) + (d * (double)hr[i]));
	}
	double dz = q->zb - z, ds = q->sb - s;
	double t1 = ((dz * q->uhe) + (ds * q->lhe)) - (s * dhe);
	double t2 = ((dz * dz) * q->uhu) + ((ds * ds) * q->lhl) + ((s * s) * dhd) +
		    ((2.0 * dz * ds) * q->uhl) - ((2.0 * dz * s) * dhu) - ((2.0 * ds * s) * dhl);
	q->k = k;
	q->zc = z;
	q->sc = s;
	memcpy(q->cc, codes, n);
	q->have_cand = 1;
	return (q->eb + (2.0 * t1)) + t2;
}

void qs_daq_qform_commit(struct qs_daq_qform *q)
{
	if (!q->have_cand)
		return;
	size_t n = q->n, k = q->k;
	double hd[QS_DAQ_QFORM_MAX];
	for (size_t i = 0; i < n; i++)
		hd[i] = 0.0;
	for (size_t t = 0; t < k; t++) {
		const float *hr = q->h + (size_t)q->idx[t] * n;
		double d = q->dv[t];
		for (size_t i = 0; i < n; i++)
			hd[i] += (double)hr[i] * d;
	}
	double dz = q->zb - q->zc, ds = q->sb - q->sc, s = q->sc;
	for (size_t i = 0; i < n; i++) {
		q->he[i] += ((dz * q->hu[i]) + (ds * q->hl[i])) - (s * hd[i]);
		q->hl[i] += hd[i];
	}
	for (size_t t = 0; t < k; t++) {
		size_t i = q->idx[t];
		q->lb[i] = (double)q->lev[q->cc[i]];
	}
	memcpy(q->cb, q->cc, n);
	q->zb = q->zc;
	q->sb = q->sc;
	q->have_cand = 0;
	base_scalars(q);
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
