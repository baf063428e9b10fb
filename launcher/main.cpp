// The styleforge executable: everything lives in the libraries; see launcher/cli.h.
#include "launcher/cli.h"
#include "launcher/early_signals.h"

#include <cstdlib>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

// A training step allocates and frees the same few hundred activation-sized blocks (0.1 to 30 MB)
// every iteration. With glibc's defaults each block above the dynamic mmap threshold is a fresh
// mmap: every step then pays page faults and zeroing for its whole working set (8-9% of a CPU
// step in `perf`). Serving blocks up to 32 MB (glibc's ceiling for this setting) from the heap and
// keeping up to 1 GiB of freed heap makes the step reuse its memory: `styleforge bench` (CPU,
// 32x32, batch 8) measured 116 against 125 sec/kimg. A user's own GLIBC_TUNABLES or MALLOC_*_
// settings take precedence. Where the build links tcmalloc (CMake STYLEFORGE_TCMALLOC) glibc's
// malloc is not used and these settings change nothing.
void tune_allocator() {
#if defined(__GLIBC__)
  if (std::getenv("GLIBC_TUNABLES") || std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_"))
    return;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

// Runs from .preinit_array: before any shared library's initialisers (LibTorch's take a while)
// and before main, so a SIGUSR1/SIGTERM to `train` is recorded from the earliest moment this
// process can run code of its own (launcher/early_signals.h), and the allocator settings apply to
// every allocation.
void preinit(int argc, char** argv, char**) {
  sf::cli::install_early_signal_handlers(argc, argv);
  tune_allocator();
}
}  // namespace
__attribute__((section(".preinit_array"), used)) static void (*const sf_preinit)(int, char**, char**) = preinit;

int main(int argc, char** argv) {
  sf::cli::install_early_signal_handlers(argc, argv);  // again (harmless): the first instruction of main
  return sf::cli::real_main(argc, argv);
}
