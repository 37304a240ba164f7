/*
 * The replay driver shared by mmud's fuzz targets: built with libFuzzer
 * (MMUD_LIBFUZZER defined, -fsanitize=fuzzer) a target is an ordinary
 * LLVMFuzzerTestOneInput; built normally, main() feeds it every file of
 * the directories or files named on the command line, so meson replays
 * the corpus and the crash reproducers as a test. Files ending in .hex
 * hold the input as hexadecimal text (whitespace ignored), so binary
 * seeds such as ELF images are kept as text in the tree.
 */
#ifndef MMUD_FUZZ_REPLAY_H
#define MMUD_FUZZ_REPLAY_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifndef MMUD_LIBFUZZER
int main(int argc, char **argv);
#endif

#endif
