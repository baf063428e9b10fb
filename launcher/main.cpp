// The styleforge executable: everything lives in the libraries; see launcher/cli.h.
#include "launcher/cli.h"
#include "launcher/early_signals.h"

namespace {
// Runs from .preinit_array: before any shared library's initialisers (LibTorch's take a while)
// and before main, so a SIGUSR1/SIGTERM to `train` is recorded from the earliest moment this
// process can run code of its own (launcher/early_signals.h).
void preinit(int argc, char** argv, char**) { sf::cli::install_early_signal_handlers(argc, argv); }
}  // namespace
__attribute__((section(".preinit_array"), used)) static void (*const sf_preinit)(int, char**, char**) = preinit;

int main(int argc, char** argv) {
  sf::cli::install_early_signal_handlers(argc, argv);  // again (harmless): the first instruction of main
  return sf::cli::real_main(argc, argv);
}
