// How the CLI shows a training run: a progress bar on a terminal, plain lines otherwise, drawn
// from the trainer's per-step metrics (train/trainer.h: TrainerCallbacks).
#pragma once
#include <cstdint>
#include <string>

#include "la/train/trainer.h"

namespace la::cli {

struct ProgressOptions {
  bool bar = false;  // a redrawn bar (a terminal); otherwise a line every `every` steps
  int64_t every = 10;
  std::string indent;  // prefix of every printed line
};

// Callbacks that print to stderr.
TrainerCallbacks progress_callbacks(const ProgressOptions& o);

// "mm:ss" or "XhYYm" ("--:--" when unknown).
std::string format_eta(double seconds);

}  // namespace la::cli
