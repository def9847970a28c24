#include "la/serve/adapters.h"

#include "la/core/error.h"
#include "la/io/adapter_file.h"

namespace la::serve {

bool valid_model_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (const char ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' && ch != ':' && ch != '-') return false;
  return true;
}

std::shared_ptr<const ServedAdapter> AdapterRegistry::load(const std::string& name, const std::string& path,
                                                           std::optional<GateMode> gate_mode) {
  if (!valid_model_name(name)) fail("adapter name '{}': use 1-64 letters, digits or . _ : -", printable(name));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (by_name_.count(name)) fail("an adapter named '{}' is already loaded", name);
  }
  // Loading and projecting happen outside the lock: the server keeps serving meanwhile.
  auto a = std::make_shared<ServedAdapter>();
  a->name = name;
  a->path = path;
  a->adapter = load_adapter(path, &w_.config);
  if (gate_mode) a->adapter.gate_mode = *gate_mode;
  if (a->adapter.n_layers > 0) a->prompts = std::make_unique<AdapterPrompts>(w_, a->adapter);
  std::lock_guard<std::mutex> lock(mu_);
  a->id = next_id_++;
  if (!by_name_.emplace(name, a).second) fail("an adapter named '{}' is already loaded", name);
  return a;
}

std::shared_ptr<const ServedAdapter> AdapterRegistry::remove(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return nullptr;
  auto a = it->second;
  by_name_.erase(it);
  return a;
}

std::shared_ptr<const ServedAdapter> AdapterRegistry::find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<const ServedAdapter>> AdapterRegistry::list() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<const ServedAdapter>> out;
  for (const auto& [name, a] : by_name_) out.push_back(a);
  return out;
}

}  // namespace la::serve
