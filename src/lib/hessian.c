/* hessian.c - placeholder while the hessian reader is being written: opening
 * a file fails with a clear message. */
#include <errno.h>

#include "calib.h"
#include "util.h"

struct qs_hessian {
	int unused;
};

int qs_hessian_open(const char *path, struct qs_hessian **out, struct qs_diag *diag)
{
	*out = NULL;
	return qs_diag_set(diag, -ENOSYS, "'%s': --hessian files are not supported yet", path);
}

void qs_hessian_free(struct qs_hessian *x)
{
	(void)x;
}

int qs_hessian_get(const struct qs_hessian *h, const char *tensor, uint64_t cols, float *dst,
		   bool *diag_only, struct qs_diag *diag)
{
	(void)h, (void)cols, (void)dst, (void)diag_only;
	return qs_diag_set(diag, -ENOSYS, "tensor '%s': no Hessian reader", tensor);
}
