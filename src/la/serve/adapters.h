// The adapters a server holds (SPEC §9): loaded at start or while serving, each projected once
// into prompt keys/values that every request naming it shares by reference. Requests hold a
// shared_ptr, so an adapter unloaded while requests still use it stays alive until they finish.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "la/model/adapter.h"
#include "la/model/block.h"
#include "la/model/weights.h"

namespace la::serve {

struct ServedAdapter {
  uint64_t id = 0;  // unique for the server's life (a slot's cached prefix names its adapter by it)
  std::string name, path;
  Adapter adapter;
  std::unique_ptr<AdapterPrompts> prompts;  // Kp, Vp of every adapted layer: projected once
};

class AdapterRegistry {
 public:
  explicit AdapterRegistry(const ModelWeights& w) : w_(w) {}
  // Loads `path` (the one adapter-loading path, checked against the model) and projects its
  // prompts, with `gate_mode` instead of the file's when given. Throws la::Error for a bad file,
  // a shape that does not fit, a bad or taken name.
  std::shared_ptr<const ServedAdapter> load(const std::string& name, const std::string& path,
                                            std::optional<GateMode> gate_mode = std::nullopt);
  // Removes it from the list (new requests no longer find it); returns it (null: not loaded) so
  // the caller can wait for the requests still using it.
  std::shared_ptr<const ServedAdapter> remove(const std::string& name);
  std::shared_ptr<const ServedAdapter> find(const std::string& name) const;
  std::vector<std::shared_ptr<const ServedAdapter>> list() const;  // by name

 private:
  const ModelWeights& w_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const ServedAdapter>> by_name_;
  uint64_t next_id_ = 1;
};

// A name for an adapter or the base in URLs and JSON: 1-64 characters of [A-Za-z0-9._:-].
bool valid_model_name(const std::string& name);

}  // namespace la::serve
