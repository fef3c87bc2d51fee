#include "core/dry_run.h"

namespace sdrt {

namespace {
thread_local bool dry = false;
}

DryRun::DryRun() : outer_(dry) { dry = true; }
DryRun::~DryRun() { dry = outer_; }

bool in_dry_run() { return dry; }

}  // namespace sdrt
