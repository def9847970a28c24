#include "la/train/checkpoint.h"

#include <charconv>
#include <cstring>

#include "la/core/error.h"
#include "la/formats/safetensors.h"
#include "la/model/adapter_file.h"

namespace la {

namespace {

void put(SafetensorsWriter& w, const std::string& name, const std::vector<float>& v) {
  w.add_f32(name, {static_cast<int64_t>(v.size())}, v.data());
}

std::vector<float> take(const SafetensorsFile& f, const std::string& name, size_t n) {
  const SafeTensor& t = f.get(name);
  if (t.dtype != SafeDType::F32 || static_cast<size_t>(t.numel()) != n)
    fail("{}: tensor '{}' has the wrong type or size (expected {} F32 values)", f.path(), name, n);
  std::vector<float> v(n);
  std::memcpy(v.data(), t.data, n * sizeof(float));
  return v;
}

std::string meta(const SafetensorsFile& f, const std::string& key) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end()) fail("{}: not a training checkpoint (metadata '{}' missing)", f.path(), key);
  return it->second;
}

template <typename T>
T meta_num(const SafetensorsFile& f, const std::string& key) {
  const std::string s = meta(f, key);
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) fail("{}: metadata '{}' is not a number: '{}'", f.path(), key, s);
  return v;
}

}  // namespace

void save_checkpoint(const TrainState& s, const std::string& path) {
  SafetensorsWriter w;
  add_adapter_tensors(w, s.adapter);
  put(w, "optimizer.exp_avg.adapter_query", s.m_query.m);
  put(w, "optimizer.exp_avg_sq.adapter_query", s.m_query.v);
  put(w, "optimizer.exp_avg.gate", s.m_gate.m);
  put(w, "optimizer.exp_avg_sq.gate", s.m_gate.v);
  w.set_metadata("checkpoint.step", std::to_string(s.step));
  w.set_metadata("checkpoint.seed", std::to_string(s.seed));
  w.set_metadata("checkpoint.shuffle", s.shuffle ? "1" : "0");
  w.set_metadata("checkpoint.batch_size", std::to_string(s.batch_size));
  w.set_metadata("checkpoint.examples", std::to_string(s.examples));
  w.set_metadata("checkpoint.last_loss", fmt::format("{:.9g}", s.last_loss));
  w.write(path);
}

TrainState load_checkpoint(const std::string& path) {
  SafetensorsFile f = SafetensorsFile::open(path);
  TrainState s;
  s.step = meta_num<int64_t>(f, "checkpoint.step");
  s.seed = meta_num<uint64_t>(f, "checkpoint.seed");
  s.shuffle = meta(f, "checkpoint.shuffle") == "1";
  s.batch_size = meta_num<int64_t>(f, "checkpoint.batch_size");
  s.examples = meta_num<int64_t>(f, "checkpoint.examples");
  s.adapter = read_adapter_tensors(f);
  const size_t nq = s.adapter.query.size(), ng = s.adapter.gate.size();
  s.m_query.m = take(f, "optimizer.exp_avg.adapter_query", nq);
  s.m_query.v = take(f, "optimizer.exp_avg_sq.adapter_query", nq);
  s.m_gate.m = take(f, "optimizer.exp_avg.gate", ng);
  s.m_gate.v = take(f, "optimizer.exp_avg_sq.gate", ng);
  return s;
}

}  // namespace la
