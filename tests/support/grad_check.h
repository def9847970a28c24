// The adapter gradient check shared by the gradient tests: analytic gradients of adapter_query
// and gate against central finite differences of the mean masked loss.
#pragma once
#include <functional>
#include <random>
#include <span>

#include "la/model/train_graph.h"

namespace la::test {

// Three sequences (lengths 9, 14, 5; prompts 4, 6, 1) of random tokens after BOS: a packed batch
// with masked prompts, for the gradient tests.
PackedBatch make_batch(int64_t vocab, std::mt19937& rng);

// The central difference (loss(p[i]+eps) - loss(p[i]-eps)) / 2eps, p[i] restored after.
double central_difference(std::span<float> p, size_t i, float eps, const std::function<double()>& loss);

// Runs the forward+backward once, then checks every gate and 40 random adapter_query entries
// with float central differences (step 2e-2: large enough to beat rounding, small enough for the
// curvature; tolerance 3e-4 + 3% of |fd|). Also asserts the checked gradients are not all ~0
// (the check would be vacuous) and that the lowest adapted layer's prompt gets a gradient. Every
// other row of the adapter's table (the visual projection) gets 20 random entries checked.
void expect_adapter_grads_match_fd(TrainGraph& g, const PackedBatch& b, Adapter& a, std::mt19937& rng);

}  // namespace la::test
