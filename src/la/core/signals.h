// Graceful stop on SIGINT, SIGTERM and SIGHUP for long runs (training): the first signal only
// sets a flag that the loop reads at its next step boundary (it then saves a checkpoint and
// stops, saying how to resume); a second signal ends the process at once.
#pragma once

namespace la {

// Installs the handlers (idempotent). Until then stop_requested() is always false.
void install_stop_handlers();
// True once a stop signal has arrived.
bool stop_requested();
// The number of the first stop signal received (0: none).
int stop_signal();

}  // namespace la
