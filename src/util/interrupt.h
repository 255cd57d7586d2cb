#pragma once
// SIGINT/SIGTERM set a flag that long jobs poll between batches, so they stop cleanly:
// temporary files are removed and nothing half-written is left under a final name.
namespace tsumugi {

void install_interrupt_handler();
bool interrupted();
// Throws tsumugi::Error if an interrupt arrived.
void throw_if_interrupted();

}  // namespace tsumugi
