/*
 * mmuctl's console: attaches the terminal (or stdin and stdout) to a VM's
 * console socket, the stream mmud serves for COM1 (docs/QMP.md and the
 * README's "--console socket:PATH"). Separate from the QMP commands
 * because it is a different protocol: raw bytes both ways, a terminal in
 * raw mode, an escape key.
 */
#ifndef MMUD_MMUCTL_CONSOLE_H
#define MMUD_MMUCTL_CONSOLE_H

/* Exit statuses mmuctl shares with its console. */
#define EXIT_FAILED 1
#define EXIT_USAGE 2

/*
 * Copies the console socket at path to stdout and stdin to it until the
 * daemon closes it, SIGINT/SIGTERM, or on a terminal Ctrl-]. prog names
 * mmuctl in messages. 0, EXIT_FAILED or EXIT_USAGE (cannot connect).
 */
int mmuctl_console(const char *prog, const char *path);

#endif
