// Checks on loaded weights that a file's container cannot make: every value finite. A NaN or an
// infinity in a weight makes every output NaN ("??" from generate, "loss nan" from eval), so it
// is found once at load, cheaply (a scan of the stored bits at memory speed: quantised blocks
// only by their scales), and reported with the tensor's name.
#pragma once
#include "la/model/weights.h"

namespace la {

// Throws la::Error "<path>: tensor <name> holds NaN or infinite values (element i)".
void check_finite_weights(const ModelWeights& w);

}  // namespace la
