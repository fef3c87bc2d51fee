// Reads a component's config.json. Every architecture switch comes from here; a missing or
// ill-typed key fails with the file and key named.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"

namespace sdrt {

class Config {
 public:
  static Config load(const std::string& path);
  static Config from_json(nlohmann::json j, std::string source);

  const std::string& source() const { return source_; }
  const nlohmann::json& json() const { return json_; }
  // True when the key is present and not null.
  bool has(const std::string& key) const;

  template <typename T>
  T get(const std::string& key) const {
    if (!has(key)) fail(source_, ": missing required key '", key, "'");
    return convert<T>(key);
  }
  // Absent or null keys take the default, as diffusers' config defaults do.
  template <typename T>
  T get(const std::string& key, const T& fallback) const {
    return has(key) ? convert<T>(key) : fallback;
  }
  // An int or a per-level list, e.g. attention_head_dim; scalars broadcast to `levels`.
  std::vector<int> int_or_list(const std::string& key, size_t levels, int fallback) const;

  [[noreturn]] void bad_value(const std::string& key, const std::string& why) const {
    fail(source_, ": key '", key, "' = ", json_.contains(key) ? json_[key].dump() : "<absent>", ": ", why);
  }
  // For sizes and counts read from `key`.
  void require_positive(const std::string& key, int64_t value) const {
    if (value <= 0) bad_value(key, "must be positive");
  }

 private:
  template <typename T>
  T convert(const std::string& key) const {
    try {
      return json_.at(key).get<T>();
    } catch (const nlohmann::json::exception&) {
      bad_value(key, "has the wrong type");
    }
  }
  nlohmann::json json_;
  std::string source_;
};

}  // namespace sdrt
