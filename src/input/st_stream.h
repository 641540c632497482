/* st_stream.h - the streaming safetensors header parser (st_stream.c). */
#ifndef QS_ST_STREAM_H
#define QS_ST_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

/* __metadata__ is carried into the output's header: more than this is no
 * model card but a way to make the reader hold a 100 MB string. */
#define QS_ST_MAX_METADATA (16u << 20)

/* Parses the len header bytes, from mem when non-NULL, else read from fd
 * at offset base through a fixed window.  Returns the tensors in document
 * order with offset relative to the data area (data_size bytes), and the
 * metadata re-serialized (or NULL).  Validates each entry as
 * qs_st_parse_header documents; the caller checks the tiling. */
int qs_st_parse_stream(const char *fname, const uint8_t *mem, int fd, uint64_t base,
		       uint64_t len, uint64_t data_size, struct qs_st_tensor **tensors,
		       size_t *n, char **metadata_json, struct qs_diag *diag);

#endif /* QS_ST_STREAM_H */
