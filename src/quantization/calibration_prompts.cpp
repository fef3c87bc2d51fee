#include "quantization/quantize_model.h"

#include <fstream>

#include "core/error.h"

namespace sdrt::quantization {

// Varied subjects, styles and prompt lengths, so the activations seen in calibration span what
// users ask for: scenes, portraits, objects, art styles, and short emoji-style names (what the
// shipped model knows). Order matters only in that --calibration-samples N takes the first N, so
// the list interleaves the kinds.
const std::vector<std::string>& default_calibration_prompts() {
  static const std::vector<std::string> prompts = {
      "a photograph of an astronaut riding a horse",
      "red apple",
      "a lighthouse on a rocky coast at dusk, dramatic clouds, oil painting",
      "smiling face with heart eyes, google style",
      "portrait of an old fisherman, detailed wrinkles, soft window light",
      "banana",
      "a cozy reading nook with a cat sleeping on a pile of books, watercolor",
      "cartoon bird, twitter style",
      "a futuristic city skyline at night, neon lights, rain, cinematic",
      "carrot, twitter style",
      "a bowl of ramen with a soft boiled egg, food photography, shallow depth of field",
      "a red heart emoji",
      "mountain lake at sunrise, mist over the water, pine trees",
      "grinning face, smile, google style",
      "an isometric illustration of a tiny workshop full of tools",
      "rocket",
      "a medieval castle on a hill, fantasy art, highly detailed",
      "hot beverage, coffee, twitter style",
      "close-up of a hummingbird drinking from a flower, macro photography",
      "dog face",
      "a minimalist poster of a bicycle, flat colors, vector art",
      "sun with face",
      "a busy street market in marrakech, vibrant colors, photograph",
      "pizza, google style",
      "a knight in shining armor, studio lighting, 3d render",
      "snowman",
      "an abstract painting with bold brush strokes in blue and orange",
      "butterfly, twitter style",
      "a vintage car parked in front of a diner, 1950s, kodachrome",
      "four leaf clover",
      "underwater coral reef with tropical fish, sunlight rays",
      "",  // the empty prompt: what unconditional guidance halves see
  };
  return prompts;
}

std::vector<std::string> read_calibration_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path, ": cannot read the calibration prompt file");
  std::vector<std::string> prompts;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos || line[line.find_first_not_of(" \t")] == '#') continue;
    prompts.push_back(line);
  }
  if (in.bad()) fail(path, ": read error");
  SDRT_CHECK(!prompts.empty(), path, ": the calibration prompt file holds no prompts (one per line; # comments)");
  return prompts;
}

}  // namespace sdrt::quantization
