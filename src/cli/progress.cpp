#include "progress.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

namespace la::cli {

std::string format_eta(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  return fmt::format("{:02}:{:02}", t / 60, t % 60);
}

TrainerCallbacks progress_callbacks(const ProgressOptions& o) {
  struct State {
    int64_t first_step = -1;  // the step this run started from (a resume starts later)
    int64_t tokens = 0;
  };
  auto st = std::make_shared<State>();
  TrainerCallbacks cb;
  cb.log = [o](const std::string& s) { std::fprintf(stderr, "%s%s\n", o.indent.c_str(), s.c_str()); };
  cb.on_step = [o, st](const StepMetrics& m, int64_t total) {
    if (st->first_step < 0) st->first_step = m.step - 1;
    st->tokens += m.tokens;
    const double avg_tps = static_cast<double>(st->tokens) / m.elapsed_s;
    const double eta = static_cast<double>(total - m.step) * m.elapsed_s / static_cast<double>(m.step - st->first_step);
    if (o.bar) {
      const int width = 24;
      const int filled = static_cast<int>(width * m.step / std::max<int64_t>(1, total));
      std::fprintf(stderr, "\r%s[%s%s] %lld/%lld loss %.4f lr %.2e %.0f tok/s ETA %s ", o.indent.c_str(),
                   std::string(static_cast<size_t>(filled), '#').c_str(),
                   std::string(static_cast<size_t>(width - filled), '.').c_str(), static_cast<long long>(m.step),
                   static_cast<long long>(total), m.loss, static_cast<double>(m.lr), avg_tps, format_eta(eta).c_str());
      std::fflush(stderr);
      if (m.step == total) std::fputc('\n', stderr);
    } else if (m.step == st->first_step + 1 || m.step % o.every == 0 || m.step == total) {
      std::fprintf(stderr, "%s%s\n", o.indent.c_str(),
                   fmt::format("step {}/{} epoch {:.2f} loss {:.4f} grad_norm {:.3g} lr {:.3e} {:.0f} tok/s ETA {}",
                               m.step, total, m.epoch, m.loss, m.grad_norm, m.lr, avg_tps, format_eta(eta))
                       .c_str());
    }
  };
  return cb;
}

}  // namespace la::cli
