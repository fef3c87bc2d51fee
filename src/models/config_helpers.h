// Config readers for the model loaders that need the kernels layer (io/, where Config lives,
// does not link it).
#pragma once

#include <string>

#include "io/config.h"
#include "kernels/kernels.h"

namespace sdrt {

// The activation named by `key`, or by `fallback` when the key is absent or null. An empty
// fallback stands for diffusers' None: an absent key then means no activation. An unknown name
// fails with the file and key named.
kernels::Activation read_activation(const Config& config, const std::string& key, const std::string& fallback);

}  // namespace sdrt
