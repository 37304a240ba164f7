/*
 * Fuzz target for mmud's settings (daemon/config.c): the input is a
 * command line and a config file. Up to the first "\0\0" it is argv
 * (entries separated by NUL bytes, after "mmud"); the rest is the file,
 * given with --config when the command line names none. Nothing may
 * crash or trip a sanitizer; a refusal must say why, and accepted
 * settings must be within the ranges mmud relies on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mmud.h"
#include "replay.h"
#include "vm.h"

#define MAX_ARGS 16

static int file_fd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *sep = memmem(data, size, "\0\0", 2);
	size_t cmd_len = sep ? (size_t)(sep - data) : 0;
	const uint8_t *file = sep ? sep + 2 : data;
	size_t file_len = size - (size_t)(file - data);
	char *cmd = malloc(cmd_len + 1), *argv[MAX_ARGS + 4], path[64],
	     err[512];
	struct mmud_config cfg;
	int argc = 0, r;

	if (!cmd)
		abort();
	if (file_fd < 0) {
		file_fd = memfd_create("fuzz-config", MFD_CLOEXEC);
		if (file_fd < 0)
			abort();
	}
	if (ftruncate(file_fd, 0) < 0 ||
	    pwrite(file_fd, file, file_len, 0) != (ssize_t)file_len)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", file_fd);

	memcpy(cmd, data, cmd_len);
	cmd[cmd_len] = '\0';
	argv[argc++] = "mmud";
	for (size_t i = 0; sep && i <= cmd_len && argc < MAX_ARGS + 1;) {
		argv[argc++] = cmd + i;
		i += strlen(cmd + i) + 1;
	}
	if (!memmem(cmd, cmd_len, "--config", 8)) {
		argv[argc++] = "--config";
		argv[argc++] = path;
	}
	argv[argc] = NULL;

	err[0] = '\0';
	r = mmud_config_load(&cfg, argc, argv, err, sizeof(err));
	if (r < 0 && !err[0])
		abort(); /* refused without a reason */
	if (r == 0 && !cfg.help && !cfg.version &&
	    (cfg.smp < 1 || cfg.smp > VM_MAX_VCPUS || cfg.memory < VM_MIN_RAM ||
	     cfg.memory > VM_MAX_RAM || cfg.memory % 4096))
		abort(); /* accepted a setting mmud cannot run */
	mmud_config_free(&cfg);
	free(cmd);
	return 0;
}
