/* cli_util.c - error printing, exit-code mapping and argument parsing
 * shared by every command. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void cli_error(const char *fmt, ...)
{
	va_list ap;
	fputs("qshard: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_exit_code(int rc)
{
	switch (-rc) {
	case 0:
		return QS_EXIT_OK;
	case QS_EUSAGE:
		return QS_EXIT_USAGE;
	case QS_EFORMAT:
	case QS_EDTYPE:
	case QS_ENONFINITE:
	case QS_ETOOBIG:
	case QS_ESOURCE:
		return QS_EXIT_BADINPUT;
	case QS_ECHECKSUM:
		return QS_EXIT_DAMAGED;
	case QS_EINTERRUPTED:
		return QS_EXIT_INTERRUPTED;
	case QS_EMISMATCH:
	case QS_EEXIST:
	case QS_ELOCKED:
		return QS_EXIT_RESUME;
	case QS_ENOMEM_WINDOW:
		return QS_EXIT_MEMORY;
	default:
		return QS_EXIT_FAILURE;
	}
}

int cli_fail(int rc, const struct qs_diag *diag)
{
	if (diag && diag->msg[0])
		cli_error("%s", diag->msg);
	else
		cli_error("%s", qs_strerror(rc));
	return cli_exit_code(rc);
}

bool cli_parse_size(const char *text, uint64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(text, &end);
	if (end == text || errno || !(v >= 0) || !isfinite(v))
		return false;
	double mult = 1;
	switch (*end) {
	case 'k': case 'K': mult = 1024.0; end++; break;
	case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
	case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
	case 't': case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
	default: break;
	}
	if (*end == 'i' && mult > 1)
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end != '\0')
		return false;
	v *= mult;
	if (v >= 18446744073709551615.0)
		return false;
	*out = (uint64_t)v;
	return true;
}

int cli_choice(const char *opt, const char *text, const char *const *names)
{
	size_t n = 0;
	for (; names[n]; n++)
		if (strcmp(text, names[n]) == 0)
			return (int)n;
	char list[256] = "";
	for (size_t i = 0; i < n; i++) {
		const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
		strncat(list, sep, sizeof(list) - strlen(list) - 1);
		strncat(list, names[i], sizeof(list) - strlen(list) - 1);
	}
	cli_error("%s must be %s (got '%s')", opt, list, text);
	return -1;
}

bool cli_parse_part(const char *text, unsigned *k, unsigned *n)
{
	char *end;
	unsigned long kk = 0, nn = 0;
	bool ok = text[0] >= '1' && text[0] <= '9';
	if (ok) {
		kk = strtoul(text, &end, 10);
		ok = *end == '/' && end[1] >= '1' && end[1] <= '9';
	}
	if (ok) {
		nn = strtoul(end + 1, &end, 10);
		ok = *end == '\0' && kk <= nn && nn <= QS_PART_MAX;
	}
	if (!ok) {
		cli_error("--part must be K/N with 1 <= K <= N <= %u (got '%s')", QS_PART_MAX, text);
		return false;
	}
	*k = (unsigned)kk;
	*n = (unsigned)nn;
	return true;
}

const char *cli_human(uint64_t bytes, char buf[32])
{
	if (bytes >= 1000000000ull)
		snprintf(buf, 32, "%.2f GB", bytes / 1e9);
	else if (bytes >= 1000000ull)
		snprintf(buf, 32, "%.1f MB", bytes / 1e6);
	else
		snprintf(buf, 32, "%.1f kB", bytes / 1e3);
	return buf;
}

bool cli_is_qshard_file(const char *path)
{
	unsigned char m[4];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, m, 4);
	close(fd);
	/* the header is a zstd skippable frame with magic 0x184D2A51 */
	return n == 4 && m[0] == 0x51 && m[1] == 0x2A && m[2] == 0x4D && m[3] == 0x18;
}

static volatile int stop_requested;

static void on_stop_signal(int sig)
{
	stop_requested = 1;
	signal(sig, SIG_DFL);
}

volatile int *cli_stop_on_signals(void)
{
	signal(SIGINT, on_stop_signal);
	signal(SIGTERM, on_stop_signal);
	return &stop_requested;
}

void cli_default_signals(void)
{
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
}
