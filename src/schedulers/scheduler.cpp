#include "schedulers/scheduler.h"

#include <functional>
#include <utility>

#include "schedulers/scheduler_base.h"

namespace sdrt {
namespace {

using Factory = std::function<std::unique_ptr<Scheduler>(const Config&)>;

const std::vector<std::pair<std::string, Factory>>& registry() {
  static const std::vector<std::pair<std::string, Factory>> entries = {
      {"pndm", sched::make_pndm},
      {"ddim", sched::make_ddim},
      {"euler", sched::make_euler},
      {"euler_a", sched::make_euler_ancestral},
      {"dpmpp_2m", [](const Config& c) { return sched::make_dpm_solver(c, false, "dpmpp_2m"); }},
      {"dpmpp_2m_karras", [](const Config& c) { return sched::make_dpm_solver(c, true, "dpmpp_2m_karras"); }},
      {"lms", sched::make_lms},
      {"lcm", sched::make_lcm},
  };
  return entries;
}

}  // namespace

std::unique_ptr<Scheduler> make_scheduler(const std::string& name, const Config& config) {
  for (const auto& [entry_name, factory] : registry()) {
    if (entry_name == name) return factory(config);
  }
  std::string known;
  for (const auto& entry : registry()) known += (known.empty() ? "" : ", ") + entry.first;
  fail("unknown scheduler '", name, "'; known schedulers: ", known);
}

std::vector<std::string> scheduler_names() {
  std::vector<std::string> names;
  for (const auto& entry : registry()) names.push_back(entry.first);
  return names;
}

}  // namespace sdrt
