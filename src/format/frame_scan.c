/* frame_scan.c - the size of one frame of a qshard file without reading or
 * decompressing it: a skippable frame states its length; a zstd frame is
 * measured by walking its block headers (RFC 8878 section 3.1.1.2), which
 * costs one 3-byte read per block (at most 128 KiB of content each).
 * Resume and verify use it to walk a file whose tail may be torn. */
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getFrameHeader: stable since 1.3 */
#include <zstd.h>

#include "container.h"
#include "util.h"

#define SKIPPABLE_MASK 0xFFFFFFF0u
#define SKIPPABLE_BASE 0x184D2A50u
#define BLOCK_SIZE_MAX (128u * 1024u)

int qs_frame_size_at(int fd, uint64_t off, uint64_t limit, uint32_t *magic,
		     uint64_t *size)
{
	uint8_t head[ZSTD_FRAMEHEADERSIZE_MAX];
	uint64_t end;
	int err;

	if (off > limit || limit - off < 8)
		return -QS_EFORMAT;
	size_t n = limit - off < sizeof(head) ? (size_t)(limit - off) : sizeof(head);
	err = qs_pread_full(fd, head, n, off);
	if (err)
		return err;
	uint32_t m = qs_get_le32(head);
	*magic = m;
	if ((m & SKIPPABLE_MASK) == SKIPPABLE_BASE) {
		end = off + 8 + (uint64_t)qs_get_le32(head + 4);
		if (end > limit)
			return -QS_EFORMAT;
		*size = end - off;
		return 0;
	}
	if (m != QS_ZSTD_MAGIC)
		return -QS_EFORMAT;

	ZSTD_frameHeader zfh;
	size_t r = ZSTD_getFrameHeader(&zfh, head, n);
	/* r > 0 means the header needs more bytes than the file holds */
	if (ZSTD_isError(r) || r != 0 || zfh.frameType != ZSTD_frame)
		return -QS_EFORMAT;
	end = off + zfh.headerSize;
	for (;;) {
		uint8_t bh[3];
		if (end > limit || limit - end < 3)
			return -QS_EFORMAT;
		err = qs_pread_full(fd, bh, 3, end);
		if (err)
			return err;
		uint32_t h = (uint32_t)bh[0] | (uint32_t)bh[1] << 8 | (uint32_t)bh[2] << 16;
		bool last = h & 1;
		unsigned type = (h >> 1) & 3;
		uint32_t bsize = h >> 3;
		if (type == 3 || bsize > BLOCK_SIZE_MAX)
			return -QS_EFORMAT;
		/* an RLE block stores its one repeated byte */
		end += 3 + (type == 1 ? 1 : bsize);
		if (end > limit)
			return -QS_EFORMAT;
		if (last)
			break;
	}
	if (zfh.checksumFlag)
		end += 4;
	if (end > limit)
		return -QS_EFORMAT;
	*size = end - off;
	return 0;
}
