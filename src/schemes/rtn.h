/* rtn.h - rtn's parameter struct, for the schemes that write rtn's
 * payload and read it back with rtn's dequantize (gptq, athena). */
#ifndef QS_RTN_H
#define QS_RTN_H

struct qs_rtn_params {
	unsigned bits;   /* 2, 3, 4, 8 */
	unsigned group;  /* 32, 64, 128, 256 */
};

#endif /* QS_RTN_H */
