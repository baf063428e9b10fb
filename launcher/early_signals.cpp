#include "launcher/early_signals.h"

#include <csignal>
#include <cstring>
#include <initializer_list>

namespace sf::cli {
namespace {
volatile std::sig_atomic_t g_early = 0;
extern "C" void on_early_signal(int sig) {
  if (g_early == 0) g_early = sig;
}
}  // namespace

void install_early_signal_handlers(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "train") != 0) return;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_early_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int s : {SIGTERM, SIGUSR1, SIGINT}) sigaction(s, &sa, nullptr);
}

int take_early_signal() {
  int s = g_early;
  g_early = 0;
  return s;
}

}  // namespace sf::cli
