/* qshard.c - command dispatch, global --help and --version. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *out)
{
	fputs("usage: qshard <command> [options]\n"
	      "\n"
	      "commands:\n"
	      "  convert IN -o OUT    quantize a safetensors checkpoint into a qshard file\n"
	      "  inspect PATH         list the tensors of a checkpoint or qshard file\n"
	      "  verify FILE          check every checksum of a qshard file\n"
	      "  unpack FILE -o DIR   write the dequantized checkpoint as safetensors\n"
	      "  export FILE -o GGUF  write a GGUF file for llama.cpp\n"
	      "  merge OUT PART...    join the parts of convert --part K/N into OUT\n"
	      "  cat FILE NAME        write one tensor's values to standard output\n"
	      "\n"
	      "'qshard <command> --help' shows a command's options; see qshard(1).\n",
	      out);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return QS_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		usage(stdout);
		return QS_EXIT_OK;
	}
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
		printf("qshard %s\n", qs_version());
		return QS_EXIT_OK;
	}
	if (!strcmp(cmd, "convert"))
		return cmd_convert(argc - 1, argv + 1);
	if (!strcmp(cmd, "inspect"))
		return cmd_inspect(argc - 1, argv + 1);
	if (!strcmp(cmd, "verify"))
		return cmd_verify(argc - 1, argv + 1);
	if (!strcmp(cmd, "unpack"))
		return cmd_unpack(argc - 1, argv + 1);
	if (!strcmp(cmd, "export"))
		return cmd_export(argc - 1, argv + 1);
	if (!strcmp(cmd, "merge"))
		return cmd_merge(argc - 1, argv + 1);
	if (!strcmp(cmd, "cat"))
		return cmd_cat(argc - 1, argv + 1);
	cli_error("unknown command '%s' (see 'qshard --help')", cmd);
	return QS_EXIT_USAGE;
}
