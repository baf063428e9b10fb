// Signals that arrive before a subcommand installs its own handlers.
//
// `styleforge train` checkpoints and exits 3 on SIGTERM, SIGUSR1 and SIGINT, but installs its
// handlers only after parsing flags; a signal in that window (Slurm's USR1 can come at any time)
// used to kill the process (exit 138). main() therefore calls install_early_signal_handlers() as
// its first instruction: for `train` the three signals are recorded from then on, and the
// subcommand picks a recorded one up with take_early_signal() after installing its own handlers.
// Other subcommands keep the default actions. Async-signal-safe (a sig_atomic_t).
#pragma once

namespace sf::cli {

void install_early_signal_handlers(int argc, char** argv);
// The first signal recorded so far (0: none), cleared.
int take_early_signal();

}  // namespace sf::cli
