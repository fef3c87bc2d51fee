// Errors carry their context (file, tensor name, expected vs got) in the message, so a user
// who hands sdrt a broken checkpoint learns exactly what is wrong with it.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace sdrt {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates anything streamable: str("tensor ", name, " has ", n, " dims").
template <typename... Args>
std::string str(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str(std::forward<Args>(args)...));
}

}  // namespace sdrt

#define SDRT_CHECK(cond, ...)                 \
  do {                                        \
    if (!(cond)) ::sdrt::fail(__VA_ARGS__);   \
  } while (0)
