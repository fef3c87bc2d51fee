#include "io/config.h"

#include <fstream>

namespace sdrt {

Config Config::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open config file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": invalid JSON: ", e.what());
  }
  return from_json(std::move(j), path);
}

Config Config::from_json(nlohmann::json j, std::string source) {
  if (!j.is_object()) fail(source, ": config is not a JSON object");
  Config c;
  c.json_ = std::move(j);
  c.source_ = std::move(source);
  return c;
}

bool Config::has(const std::string& key) const { return json_.contains(key) && !json_[key].is_null(); }

std::vector<int> Config::int_or_list(const std::string& key, size_t levels, int fallback) const {
  if (!has(key)) return std::vector<int>(levels, fallback);
  const auto& v = json_[key];
  if (v.is_number_integer()) return std::vector<int>(levels, v.get<int>());
  if (!v.is_array()) bad_value(key, "expected an integer or a list of integers");
  if (v.size() != levels) bad_value(key, str("expected ", levels, " entries, one per level"));
  std::vector<int> out;
  for (const auto& e : v) {
    if (!e.is_number_integer()) bad_value(key, "expected a list of integers");
    out.push_back(e.get<int>());
  }
  return out;
}

}  // namespace sdrt
