#include "la/train/checkpoint.h"

#include <charconv>
#include <cstring>

#include "la/core/error.h"
#include "la/formats/safetensors.h"
#include "la/io/adapter_file.h"

namespace la {

namespace {

void take(const SafetensorsFile& f, const std::string& name, float* out, size_t n) {
  const SafeTensor& t = f.get(name);
  if (t.dtype != SafeDType::F32 || static_cast<size_t>(t.numel()) != n)
    fail("{}: tensor '{}' has the wrong type or size (expected {} F32 values)", f.path(), name, n);
  std::memcpy(out, t.data, n * sizeof(float));
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
  if (s.full) {
    for (const ParamTensor& t : s.model.table().tensors())
      w.add_f32("model." + t.name, t.shape, s.model.slice(t).data());
    w.set_metadata("checkpoint.mode", "full");
  } else {
    add_adapter_tensors(w, s.adapter);
  }
  // The moments row by row of the parameter table: optimizer.exp_avg.<name>, .exp_avg_sq.<name>.
  for (const ParamTensor& t : trained(s).table().tensors()) {
    w.add_f32("optimizer.exp_avg." + t.name, {static_cast<int64_t>(t.size)}, s.moments.m.data() + t.offset);
    w.add_f32("optimizer.exp_avg_sq." + t.name, {static_cast<int64_t>(t.size)}, s.moments.v.data() + t.offset);
  }
  w.set_metadata("checkpoint.step", std::to_string(s.step));
  w.set_metadata("checkpoint.seed", std::to_string(s.seed));
  w.set_metadata("checkpoint.shuffle", s.shuffle ? "1" : "0");
  w.set_metadata("checkpoint.batch_size", std::to_string(s.batch_size));
  w.set_metadata("checkpoint.examples", std::to_string(s.examples));
  w.set_metadata("checkpoint.last_loss", fmt::format("{:.9g}", s.last_loss));
  for (const auto& [k, v] : s.settings) w.set_metadata("checkpoint.setting." + k, v);
  w.write(path);
}

TrainState load_checkpoint(const std::string& path, const ParamTable* model_table) {
  SafetensorsFile f = SafetensorsFile::open(path);
  TrainState s;
  const auto mode = f.metadata().find("checkpoint.mode");
  s.full = mode != f.metadata().end() && mode->second == "full";
  s.step = meta_num<int64_t>(f, "checkpoint.step");
  s.seed = meta_num<uint64_t>(f, "checkpoint.seed");
  s.shuffle = meta(f, "checkpoint.shuffle") == "1";
  s.batch_size = meta_num<int64_t>(f, "checkpoint.batch_size");
  s.examples = meta_num<int64_t>(f, "checkpoint.examples");
  if (s.full) {
    if (!model_table) fail("{}: a full-training checkpoint (the whole model), not an adapter's", path);
    s.model = ParamSet(*model_table);
    for (const ParamTensor& t : model_table->tensors()) take(f, "model." + t.name, s.model.slice(t).data(), t.size);
  } else {
    if (model_table) fail("{}: an adapter's training checkpoint, not a full-training one", path);
    s.adapter = read_adapter_tensors(f);
  }
  const std::string prefix = "checkpoint.setting.";
  for (const auto& [k, v] : f.metadata())
    if (k.rfind(prefix, 0) == 0) s.settings[k.substr(prefix.size())] = v;
  s.moments.resize(trained(s).size());
  for (const ParamTensor& t : trained(s).table().tensors()) {
    take(f, "optimizer.exp_avg." + t.name, s.moments.m.data() + t.offset, t.size);
    take(f, "optimizer.exp_avg_sq." + t.name, s.moments.v.data() + t.offset, t.size);
  }
  return s;
}

}  // namespace la
