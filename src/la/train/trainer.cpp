#include "la/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/dist/comm.h"
#include "la/io/adapter_file.h"
#include "la/io/loader.h"
#include "la/model/model_params.h"
#include "la/train/checkpoint.h"

namespace la {

namespace {

int64_t longest(const TokenizedDataset& d) {
  int64_t m = 2;
  for (const auto& e : d.examples) m = std::max(m, static_cast<int64_t>(e.tokens.size()));
  return m;
}

void pack(PackedBatch& pb, const std::vector<int64_t>& idx, const std::vector<Example>& ex) {
  pb.clear();
  for (int64_t i : idx) {
    const Example& e = ex[static_cast<size_t>(i)];
    pb.add(e.tokens, e.prompt_len, e.image);
  }
}

std::string metrics_json(const StepMetrics& m) {
  nlohmann::ordered_json j;
  j["step"] = m.step;
  j["epoch"] = m.epoch;
  j["lr"] = m.lr;
  j["loss"] = m.loss;
  j["grad_norm"] = m.grad_norm;
  j["tokens"] = m.tokens;
  j["supervised_tokens"] = m.supervised;
  j["tokens_per_s"] = m.tokens_per_s;
  j["elapsed_s"] = m.elapsed_s;
  if (m.val_loss >= 0) j["val_loss"] = m.val_loss;
  return j.dump();
}

class MetricsFile {
 public:
  // A fresh run starts the file anew. A resumed run (resumed_at >= 0: the checkpoint's step)
  // keeps the lines of the steps up to it and drops those of steps it will redo, so the file
  // never holds a step twice.
  MetricsFile(const std::string& path, int64_t resumed_at) : path_(path) {
    if (path.empty()) return;
    if (resumed_at >= 0 && file_exists(path)) {
      std::string kept;
      std::istringstream in(read_file(path));
      for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
            j["step"].get<int64_t>() <= resumed_at)
          kept += line + "\n";
      }
      write_file_atomic(path, kept.data(), kept.size());
    }
    f_ = std::fopen(path.c_str(), resumed_at >= 0 ? "a" : "w");
    if (!f_) fail("{}: cannot open metrics file for writing", path);
  }
  ~MetricsFile() {
    if (f_) std::fclose(f_);
  }
  MetricsFile(const MetricsFile&) = delete;
  MetricsFile& operator=(const MetricsFile&) = delete;
  void write(const StepMetrics& m) {
    if (!f_) return;
    std::fprintf(f_, "%s\n", metrics_json(m).c_str());
    if (std::fflush(f_) != 0) fail("{}: write error", path_);
  }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

// FNV-1a over every example's tokens and prompt length: changes with any change of the data.
uint64_t data_hash(const TokenizedDataset& d) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xffu;
      h *= 1099511628211ull;
    }
  };
  for (const Example& e : d.examples) {
    mix(e.tokens.size());
    mix(static_cast<uint64_t>(e.prompt_len));
    for (int t : e.tokens) mix(static_cast<uint32_t>(t));
  }
  return h;
}

std::map<std::string, std::string> run_settings(const FinetuneOptions& o, const TokenizedDataset& train) {
  return {{"data", fmt::format("{:016x}", data_hash(train))},
          {"mode", o.full ? "full" : "adapter"},
          {"lr", o.lr >= 0 ? fmt::format("{}", o.lr) : fmt::format("blr {}", o.blr)},
          {"min_lr", fmt::format("{}", o.min_lr)},
          {"schedule", o.schedule == Schedule::Cosine ? "cosine" : "constant"},
          {"epochs", std::to_string(o.epochs)},
          {"warmup",
           o.warmup_steps >= 0 ? fmt::format("{} steps", o.warmup_steps) : fmt::format("{} epochs", o.warmup_epochs)},
          {"weight_decay", fmt::format("{}", o.weight_decay)},
          {"grad_clip", fmt::format("{}", o.grad_clip)}};
}

// dst += src, element by element (a micro-batch's gradient into the step's).
void add_into(std::vector<float>& dst, const float* src) {
  for (size_t i = 0; i < dst.size(); ++i) dst[i] += src[i];
}

template <typename T>
void append_pod(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

// Micro-batch j's record among what the ranks sent: rank j % N sent it as its (j / N)-th record
// of `record_bytes`; the sizes are checked against what every rank must have sent.
const char* record_of(const std::vector<std::string>& parts, const Comm& comm, size_t j, size_t record_bytes,
                      size_t micro_batches) {
  const auto n = static_cast<size_t>(comm.size());
  const size_t rank = j % n;
  const size_t owned = micro_batches / n + (rank < micro_batches % n ? 1 : 0);
  if (parts[rank].size() != owned * record_bytes)
    fail("rank {} sent {} bytes for {} micro-batches of {} bytes each: the ranks disagree about the step", rank,
         parts[rank].size(), owned, record_bytes);
  return parts[rank].data() + (j / n) * record_bytes;
}

// What every rank of a data-parallel run must agree on before the first step (SPEC §11): the
// settings, the data (hashes of the tokens), the model's shape and a sample of its weights, and
// the starting parameters.
std::string run_fingerprint(const ModelWeights& w, const TokenizedDataset* val, const FinetuneOptions& o,
                            const std::map<std::string, std::string>& settings, const ParamSet& params,
                            int64_t start_step) {
  uint64_t h = 1469598103934665603ull;
  auto mix_bytes = [&](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  auto sample = [&](const WeightMatrix& m) {
    if (m.data) mix_bytes(m.data, std::min<size_t>(m.bytes(), 4096));
  };
  sample(w.tok_embeddings);
  for (const LayerWeights& l : w.layers) sample(l.wq), sample(l.w2);
  mix_bytes(params.values().data(), params.size() * sizeof(float));
  std::string f =
      fmt::format("{} {} full={} out={} K={} L={} gate={} micro={} steps={} seed={} shuffle={} start={}",
                  w.config.shape_string(), val ? data_hash(*val) : 0, o.full, o.out, o.adapter_len, o.adapter_layers,
                  gate_mode_name(o.gate_mode), o.micro_batch_size, o.steps, o.seed, o.shuffle, start_step);
  for (const auto& [k, v] : settings) f += " " + k + "=" + v;
  return f + fmt::format(" weights={:016x}", h);
}

}  // namespace

EvalResult evaluate_dataset(TrainGraph& graph, const TokenizedDataset& data, const Adapter* adapter,
                            int64_t micro_batch_size) {
  std::vector<int64_t> all(data.examples.size());
  std::iota(all.begin(), all.end(), 0);
  PackedBatch pb;
  double loss = 0;
  EvalResult r;
  // Micro-batch j is evaluated by rank j % N; the sums are made in micro-batch order on every
  // rank, so the result is the same for any N.
  const Comm& comm = Comm::world();
  const auto mbs = split_micro_batches(all, data.examples, micro_batch_size);
  std::vector<double> mb_loss(mbs.size());
  std::vector<int64_t> mb_tokens(mbs.size());
  std::string mine;
  for (size_t j = 0; j < mbs.size(); ++j) {
    if (!comm.owns(j)) continue;
    pack(pb, mbs[j], data.examples);
    const LossResult lr = graph.evaluate(pb, adapter);
    mb_loss[j] = lr.loss_sum;
    mb_tokens[j] = lr.tokens;
    append_pod(mine, lr.loss_sum);
    append_pod(mine, lr.tokens);
  }
  if (comm.distributed()) {
    const std::vector<std::string> parts = comm.allgather(mine);
    for (size_t j = 0; j < mbs.size(); ++j) {
      const char* rec = record_of(parts, comm, j, sizeof(double) + sizeof(int64_t), mbs.size());
      std::memcpy(&mb_loss[j], rec, sizeof(double));
      std::memcpy(&mb_tokens[j], rec + sizeof(double), sizeof(int64_t));
    }
  }
  for (size_t j = 0; j < mbs.size(); ++j) {
    loss += mb_loss[j];
    r.tokens += mb_tokens[j];
  }
  r.examples = static_cast<int64_t>(data.examples.size());
  r.loss = r.tokens > 0 ? loss / static_cast<double>(r.tokens) : 0.0;
  return r;
}

EvalResult evaluate_dataset(const ModelWeights& w, const TokenizedDataset& data, const Adapter* adapter,
                            int64_t micro_batch_size) {
  const int64_t seq = longest(data) - 1;
  Adapter none;
  TrainGraph graph(w, adapter ? *adapter : none, micro_batch_size * seq, seq, false);
  return evaluate_dataset(graph, data, adapter, micro_batch_size);
}

FinetuneResult finetune(const ModelWeights& w, const TokenizedDataset& train, const TokenizedDataset* val,
                        const FinetuneOptions& o, const TrainerCallbacks& cb) {
  auto log = [&](const std::string& line) {
    if (cb.log) cb.log(line);
  };
  const ModelConfig& c = w.config;
  const auto n = static_cast<int64_t>(train.examples.size());
  if (n == 0) fail("training data has no examples with supervised tokens");
  if (o.batch_size <= 0 || o.micro_batch_size <= 0) fail("--batch-size and --micro-batch-size must be positive");
  if (o.batch_size % o.micro_batch_size != 0)
    fail("--batch-size {} is not a multiple of --micro-batch-size {}", o.batch_size, o.micro_batch_size);
  if (n < o.batch_size) fail("training data has {} examples, fewer than one batch of {}", n, o.batch_size);
  const int64_t steps_per_epoch = n / o.batch_size;  // the last partial batch is dropped
  int64_t total_steps = steps_per_epoch * o.epochs;
  if (o.steps >= 0) total_steps = std::min(total_steps, o.steps);

  // What a resume must find unchanged besides the data order: the data itself and the
  // hyper-parameters of the updates.
  std::map<std::string, std::string> settings = run_settings(o, train);
  // State: fresh, from --init-adapter, or from --resume.
  TrainState st;
  const ParamTable model_table = model_param_table(c);
  if (!o.resume.empty()) {
    st = load_checkpoint(o.resume, o.full ? &model_table : nullptr);
    if (!st.full) st.adapter.check_compatible(c, o.resume);
    if (st.seed != o.seed || st.shuffle != o.shuffle || st.batch_size != o.batch_size || st.examples != n)
      fail(
          "{}: checkpoint was made with seed={} shuffle={} batch={} examples={}, this run has seed={} shuffle={} "
          "batch={} examples={}",
          o.resume, st.seed, st.shuffle, st.batch_size, st.examples, o.seed, o.shuffle, o.batch_size, n);
    for (const auto& [k, v] : st.settings) {
      auto it = settings.find(k);
      if (it != settings.end() && it->second != v)
        fail("{}: checkpoint was made with {} {}, this run has {} (resume with the same data and settings)", o.resume,
             k, v, it->second);
    }
    if (st.step >= total_steps)
      fail("{}: nothing to train: the checkpoint is at step {} and this run ends at step {}", o.resume, st.step,
           total_steps);
  } else {
    if (o.full) {
      st.full = true;
      st.model = model_params(w);
    } else if (!o.init_adapter.empty()) {
      st.adapter = load_adapter(o.init_adapter, &c);
      st.adapter.check_compatible(c, o.init_adapter);
      if (o.visual.enabled() && st.adapter.visual.enabled() && !(st.adapter.visual == o.visual))
        fail("{}: its visual projection (W={} in={}, CLIP {}) does not fit this run's (W={} in={}, CLIP {})",
             o.init_adapter, st.adapter.visual.width, st.adapter.visual.in, st.adapter.visual.clip_layers,
             o.visual.width, o.visual.in, o.visual.clip_layers);
      if (o.visual.enabled() && !st.adapter.visual.enabled()) st.adapter.add_visual(o.visual, o.seed);
    } else {
      const int64_t layers = o.adapter_layers > 0 ? o.adapter_layers : std::min<int64_t>(30, c.n_layers);
      st.adapter = Adapter::create(c, o.adapter_len, layers, o.gate_mode, o.seed);
      if (o.visual.enabled()) st.adapter.add_visual(o.visual, o.seed);
    }
    st.moments.resize(trained(st).size());
    st.seed = o.seed;
    st.shuffle = o.shuffle;
    st.batch_size = o.batch_size;
    st.examples = n;
  }
  st.settings = settings;
  Adapter& a = st.adapter;
  ParamSet& params = trained(st);
  // Full training reads the model through a view of the parameters it updates.
  std::unique_ptr<ModelWeights> view = o.full ? model_view(c, st.model) : nullptr;
  const Adapter none;
  const Adapter& trained_adapter = o.full ? none : a;
  const std::string ckpt_path = o.checkpoint.empty() ? o.out + ".ckpt" : o.checkpoint;

  ScheduleOptions sched;
  sched.kind = o.schedule;
  sched.lr = o.lr >= 0 ? o.lr : o.blr * static_cast<float>(o.batch_size) / 256.0f;
  sched.min_lr = o.min_lr;
  sched.warmup_epochs = o.warmup_epochs;
  sched.warmup_steps = o.warmup_steps;
  sched.epochs = static_cast<double>(o.epochs);
  sched.steps_per_epoch = steps_per_epoch;
  AdamWOptions adam;
  adam.weight_decay = o.weight_decay;

  int64_t longest_seq = longest(train);
  if (val) longest_seq = std::max(longest_seq, longest(*val));
  const int64_t seq = longest_seq - 1;
  std::unique_ptr<TrainGraph> graph_owner =
      o.full ? std::make_unique<TrainGraph>(TrainGraph::Full{}, *view, o.micro_batch_size * seq, seq, o.recompute)
             : std::make_unique<TrainGraph>(w, a, o.micro_batch_size * seq, seq, o.recompute);
  TrainGraph& graph = *graph_owner;
  const std::string what =
      o.full ? fmt::format("full model: {} ({} trainable parameters)", c.shape_string(), params.size())
             : fmt::format("adapter: {} ({} trainable parameters, gate {})", a.shape_string(), a.parameter_count(),
                           gate_mode_name(a.gate_mode));
  log(fmt::format("{}, {} examples, {} steps/epoch, {} steps, lr {:.3g}, activation memory {:.1f} MiB{}", what, n,
                  steps_per_epoch, total_steps, sched.lr, static_cast<double>(graph.arena_bytes()) / (1 << 20),
                  o.recompute ? " (recompute)" : ""));

  // Data-parallel (SPEC §11): every rank must hold the same model, data, flags and starting
  // parameters; rank 0 alone writes files.
  const Comm& comm = Comm::world();
  comm.check_same("model, data, flags or starting weights", run_fingerprint(w, val, o, settings, params, st.step));
  if (comm.distributed())
    log(fmt::format("data-parallel over {} ranks: micro-batch j of each step on rank j % {}", comm.size(),
                    comm.size()));
  double comm_seconds = 0;
  ParamSet grads = params.zeros_like();
  ParamSet mb_grads = params.zeros_like();
  MetricsFile metrics(comm.is_root() ? o.metrics : std::string(), o.resume.empty() ? -1 : st.step);
  FinetuneResult res;
  PackedBatch pb;
  std::vector<int64_t> order;
  int64_t order_epoch = -1;
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  const int64_t first_step = st.step;
  std::string last_checkpoint = o.resume;  // the newest checkpoint with finite weights, if any
  auto where_to_resume = [&] {
    return last_checkpoint.empty() ? std::string("no checkpoint was written")
                                   : fmt::format("the last good checkpoint is {}", last_checkpoint);
  };

  for (int64_t step = st.step; step < total_steps; ++step) {
    const auto t0 = clock::now();
    const int64_t epoch = step / steps_per_epoch, in_epoch = step % steps_per_epoch;
    if (epoch != order_epoch) {
      order = epoch_order(n, o.seed, epoch, o.shuffle);
      order_epoch = epoch;
    }
    std::vector<int64_t> batch(order.begin() + in_epoch * o.batch_size, order.begin() + (in_epoch + 1) * o.batch_size);
    int64_t supervised = 0, tokens = 0;
    for (int64_t i : batch) {
      supervised += train.examples[static_cast<size_t>(i)].supervised();
      tokens += static_cast<int64_t>(train.examples[static_cast<size_t>(i)].tokens.size()) - 1;
    }
    // Each micro-batch's gradient is computed alone (micro-batch j by rank j % N) and the step's
    // gradient is their sum in micro-batch order: the same floating-point sums for any N (SPEC
    // §11). One rank adds as it goes; several exchange their micro-batches' gradients first.
    grads.zero();
    double loss_sum = 0;
    const float scale = 1.0f / static_cast<float>(supervised);
    const auto mbs = split_micro_batches(batch, train.examples, o.micro_batch_size);
    std::string mine;
    for (size_t j = 0; j < mbs.size(); ++j) {
      if (!comm.owns(j)) continue;
      mb_grads.zero();
      pack(pb, mbs[j], train.examples);
      const double mb_loss = graph.run(pb, trained_adapter, &mb_grads, scale).loss_sum;
      if (comm.distributed()) {
        append_pod(mine, mb_loss);
        mine.append(reinterpret_cast<const char*>(mb_grads.values().data()), mb_grads.size() * sizeof(float));
      } else {
        loss_sum += mb_loss;
        add_into(grads.values(), mb_grads.values().data());
      }
    }
    if (comm.distributed()) {
      const auto c0 = clock::now();
      const std::vector<std::string> parts = comm.allgather(mine);
      comm_seconds += std::chrono::duration<double>(clock::now() - c0).count();
      const size_t record = sizeof(double) + grads.size() * sizeof(float);
      for (size_t j = 0; j < mbs.size(); ++j) {
        const char* rec = record_of(parts, comm, j, record, mbs.size());
        double mb_loss;
        std::memcpy(&mb_loss, rec, sizeof(double));
        loss_sum += mb_loss;
        std::memcpy(mb_grads.values().data(), rec + sizeof(double), grads.size() * sizeof(float));
        add_into(grads.values(), mb_grads.values().data());
      }
    }
    const double loss = loss_sum / static_cast<double>(supervised);
    const double gnorm = grads.norm();
    if (!std::isfinite(loss) || !std::isfinite(gnorm))
      fail("{} is {} at step {}: stopping without updating the {}; {}", std::isfinite(loss) ? "gradient norm" : "loss",
           std::isfinite(loss) ? gnorm : loss, step + 1, o.full ? "model" : "adapter", where_to_resume());
    if (o.grad_clip > 0 && gnorm > o.grad_clip) grads.scale(static_cast<float>(o.grad_clip / gnorm));
    const float lr = learning_rate(sched, step);
    // One update over the whole flat buffer: every row of the parameter table alike.
    adamw_update(params.values().data(), grads.values().data(), st.moments, static_cast<int64_t>(params.size()), lr,
                 step + 1, adam);
    // A finite loss can still give an update that overflows (a huge lr): never checkpoint that.
    if (!params.all_finite())
      fail("{} weights became NaN or infinite in the update of step {} (lr {:.3g}): stopping; {}",
           o.full ? "model" : "adapter", step + 1, lr, where_to_resume());
    st.step = step + 1;
    st.last_loss = loss;

    const auto t1 = clock::now();
    StepMetrics m;
    m.step = step + 1;
    m.epoch = static_cast<double>(step + 1) / static_cast<double>(steps_per_epoch);
    m.lr = lr;
    m.loss = loss;
    m.grad_norm = gnorm;
    m.tokens = tokens;
    m.supervised = supervised;
    m.tokens_per_s = static_cast<double>(tokens) / std::chrono::duration<double>(t1 - t0).count();
    m.elapsed_s = std::chrono::duration<double>(t1 - t_start).count();
    if (val && o.eval_every > 0 && (m.step % o.eval_every == 0 || m.step == total_steps)) {
      m.val_loss = evaluate_dataset(graph, *val, o.full ? nullptr : &a, o.micro_batch_size).loss;
      log(fmt::format("step {}: held-out loss {:.4f}", m.step, m.val_loss));
    }
    metrics.write(m);
    res.history.push_back(m);
    if (step == first_step) res.first_loss = loss;
    res.last_loss = loss;

    if (cb.on_step) cb.on_step(m, total_steps);
    // A stop asked of one rank stops them all at the same step.
    const bool stop = m.step < total_steps && comm.any(cb.should_stop && cb.should_stop());
    if (stop || (o.save_every > 0 && (m.step % o.save_every == 0 || m.step == total_steps))) {
      if (comm.is_root()) save_checkpoint(st, ckpt_path);
      last_checkpoint = ckpt_path;
    }
    if (stop) {
      res.interrupted = true;
      res.checkpoint = ckpt_path;
      res.steps_done = st.step - first_step;
      res.adapter = a;
      res.model = st.model;
      return res;
    }
  }
  if (comm.is_root()) {
    if (o.full)
      save_model(*view, o.vocab, o.out);
    else
      save_adapter(a, o.out);
  }
  if (comm.distributed())
    log(fmt::format("data-parallel: {:.1f} MiB sent by this rank, {:.2f} s in exchanges",
                    static_cast<double>(comm.bytes_sent()) / (1 << 20), comm_seconds));
  res.steps_done = st.step - first_step;
  res.adapter = a;
  res.model = st.model;
  return res;
}

}  // namespace la
