// A dry run: while a DryRun is alive on a thread, the expensive kernels called from that thread
// (packed convolutions and linear layers, attention) allocate their outputs and workspaces and
// make their plans exactly as they would, but skip the arithmetic; their outputs hold
// unspecified values. StableDiffusionPipeline::compile() runs the models this way to create
// every primitive and record the activation arenas' allocations, which depend only on shapes,
// for a fraction of a forward pass's time. The cheap memory-bound kernels still run.
#pragma once

namespace sdrt {

class DryRun {
 public:
  DryRun();
  ~DryRun();
  DryRun(const DryRun&) = delete;
  DryRun& operator=(const DryRun&) = delete;

 private:
  bool outer_;
};

// Whether a DryRun is alive on this thread.
bool in_dry_run();

}  // namespace sdrt
