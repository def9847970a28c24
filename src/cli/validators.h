// Flag checks that say what is wanted in words. CLI11's Range lets NaN through (every comparison
// with NaN is false) and prints its bounds in full (309 digits for a double's maximum).
#pragma once
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <limits>
#include <string>

namespace la::cli {

inline std::string bound_words(double lo, double hi) {
  const double inf = std::numeric_limits<double>::infinity();
  if (hi == inf) return lo == 0 ? "0 or more" : fmt::format("{:g} or more", lo);
  if (lo == -inf) return fmt::format("at most {:g}", hi);
  return fmt::format("from {:g} to {:g}", lo, hi);
}

// A finite number in [lo, hi].
inline CLI::Validator finite_in(double lo, double hi = std::numeric_limits<double>::infinity()) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(s, v) || !std::isfinite(v) || v < lo || v > hi)
          return fmt::format("must be a number {}, not '{}'", bound_words(lo, hi),
                             s.size() > 40 ? s.substr(0, 40) + "..." : s);
        return {};
      },
      "");
}

// An integer in [lo, hi].
inline CLI::Validator integer_in(long long lo, long long hi = std::numeric_limits<long long>::max()) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        long long v = 0;
        if (!CLI::detail::lexical_cast(s, v) || v < lo || v > hi)
          return fmt::format("must be a whole number {}, not '{}'",
                             hi == std::numeric_limits<long long>::max()
                                 ? (lo == 0 ? std::string("0 or more") : fmt::format("{} or more", lo))
                                 : fmt::format("from {} to {}", lo, hi),
                             s.size() > 40 ? s.substr(0, 40) + "..." : s);
        return {};
      },
      "");
}

}  // namespace la::cli
