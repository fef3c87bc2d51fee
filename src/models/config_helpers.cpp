#include "models/config_helpers.h"

#include "core/error.h"

namespace sdrt {

kernels::Activation read_activation(const Config& config, const std::string& key, const std::string& fallback) {
  if (!config.has(key) && fallback.empty()) return kernels::Activation::None;
  const std::string name = config.get<std::string>(key, fallback);
  try {
    return kernels::activation_from_name(name);
  } catch (const Error& e) {
    config.bad_value(key, e.what());
  }
}

}  // namespace sdrt
