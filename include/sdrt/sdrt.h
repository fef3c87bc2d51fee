// sdrt public API: load a diffusers Stable Diffusion folder once, generate many images.
//
//   sdrt::StableDiffusionPipeline pipe = sdrt::StableDiffusionPipeline::load("models/default");
//   pipe.compile({/*images=*/1, /*width=*/512, /*height=*/512});  // optional: kernel plans made now
//   sdrt::GenerateParams p;
//   p.prompt = "red apple";
//   p.steps = 20;
//   sdrt::GenerateResult r = pipe.generate(p);   // r.images: [N, H, W, 3] floats in [0, 1]
//   sdrt::write_png("apple.png", sdrt::to_image8_hwc(r.images.slice0(0, 1).reshape({H, W, 3})));
//
// Errors are thrown as sdrt::Error with the file, tensor or option named.
#pragma once

#include "core/error.h"
#include "core/parallel.h"
#include "core/tensor.h"
#include "io/png.h"
#include "pipeline/pipeline.h"
