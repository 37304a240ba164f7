/*
 * mmud's entry point: parses the command line, loads the kernel file (or
 * the embedded sample guest), builds the VM, runs it and turns how it
 * ended into the exit status of DESIGN.md section 2. It is the one place
 * that decides to exit the process and where errors are logged, with
 * syslog priority prefixes for journald.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmu_rcu.h"
#include "vm.h"

#define EXIT_QUIT 0
#define EXIT_CRASH 2
#define EXIT_REFUSED 4
#define KERNEL_MAX (1ULL << 30)

extern const char mmud_sample_elf[], mmud_sample_elf_end[];

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mmud [--kernel FILE] [--memory SIZE] [--smp N]\n"
		"            [--append CMDLINE] [--console stdout|FILE]\n"
		"\n"
		"Boots FILE (an ELF64 kernel for guest ABI v1; without it the\n"
		"embedded sample guest) on N software vCPUs (default 1) with\n"
		"SIZE of RAM (default 256M; K, M and G suffixes) and prints its\n"
		"serial console. Exit status: ((v << 1) | 1) & 0xff when the\n"
		"guest writes v to port 0xf4; 2 when it crashed; 4 when it\n"
		"could not start.\n");
}

/* SIZE with an optional K/M/G suffix (powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned int shift = 0;

	errno = 0;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	default:
		return -EINVAL;
	}
	if (*end || v > (~0ULL >> shift))
		return -EINVAL;
	*out = v << shift;
	return 0;
}

static int parse_uint(const char *s, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > 0xffffffffUL)
		return -EINVAL;
	*out = (unsigned int)v;
	return 0;
}

static void *read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > KERNEL_MAX) {
		if (!errno || S_ISREG(st.st_mode))
			errno = EFBIG;
		else
			errno = EINVAL;
		close(fd);
		return NULL;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		close(fd);
		return NULL;
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			close(fd);
			errno = n < 0 ? errno : EIO;
			return NULL;
		}
		done += (size_t)n;
	}
	close(fd);
	*len = done;
	return buf;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "memory", required_argument, NULL, 'm' },
		{ "smp", required_argument, NULL, 's' },
		{ "append", required_argument, NULL, 'a' },
		{ "console", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vm_config cfg = { .ram_size = VM_DEFAULT_RAM,
				 .nr_vcpus = 1,
				 .console_fd = STDOUT_FILENO };
	const char *kernel_path = NULL, *console = "stdout";
	void *kernel_buf = NULL;
	struct vm_result res;
	char err[256];
	struct vm *vm;
	int c, status;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			kernel_path = optarg;
			break;
		case 'm':
			if (parse_size(optarg, &cfg.ram_size) < 0) {
				fprintf(stderr,
					"<3>mmud: --memory %s: not a size "
					"(e.g. 512M, 2G)\n",
					optarg);
				return EXIT_REFUSED;
			}
			break;
		case 's':
			if (parse_uint(optarg, &cfg.nr_vcpus) < 0) {
				fprintf(stderr,
					"<3>mmud: --smp %s: not a number\n",
					optarg);
				return EXIT_REFUSED;
			}
			break;
		case 'a':
			cfg.cmdline = optarg;
			break;
		case 'c':
			console = optarg;
			break;
		case 'h':
			usage(stdout);
			return EXIT_QUIT;
		default:
			usage(stderr);
			return EXIT_REFUSED;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "<3>mmud: unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		return EXIT_REFUSED;
	}
	if (strcmp(console, "stdout") != 0) {
		cfg.console_fd = open(console,
				      O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
				      0644);
		if (cfg.console_fd < 0) {
			fprintf(stderr, "<3>mmud: --console %s: %s\n", console,
				strerror(errno));
			return EXIT_REFUSED;
		}
	}
	if (kernel_path) {
		kernel_buf = read_file(kernel_path, &cfg.kernel_len);
		if (!kernel_buf) {
			fprintf(stderr, "<3>mmud: --kernel %s: %s\n",
				kernel_path, strerror(errno));
			return EXIT_REFUSED;
		}
		cfg.kernel = kernel_buf;
	} else {
		cfg.kernel = mmud_sample_elf;
		cfg.kernel_len =
			(size_t)(mmud_sample_elf_end - mmud_sample_elf);
	}

	mmu_rcu_register_thread();
	vm = vm_create(&cfg, err, sizeof(err));
	if (!vm) {
		fprintf(stderr, "<3>mmud: %s: %s\n",
			kernel_path ? kernel_path : "sample guest", err);
		free(kernel_buf);
		return EXIT_REFUSED;
	}
	if (vm_run(vm, &res) < 0 && res.how != VM_END_CRASH)
		res.how = VM_END_CRASH;
	if (res.how == VM_END_DEBUG_EXIT) {
		status = (int)(((res.exit_value << 1) | 1) & 0xff);
	} else {
		fprintf(stderr, "<2>mmud: guest crashed: %s\n", res.detail);
		status = EXIT_CRASH;
	}
	if (!res.audit_ok) {
		fprintf(stderr, "<2>mmud: MMU audit after the run: %s\n",
			res.audit_msg);
		status = EXIT_CRASH;
	}
	vm_destroy(vm);
	mmu_rcu_unregister_thread();
	free(kernel_buf);
	return status;
}
