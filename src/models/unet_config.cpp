#include "models/unet_config.h"

#include <algorithm>

#include "models/config_helpers.h"

namespace sdrt {

namespace {

using nlohmann::json;

const std::vector<std::string> kDownBlockTypes = {"CrossAttnDownBlock2D", "DownBlock2D"};
const std::vector<std::string> kUpBlockTypes = {"UpBlock2D", "CrossAttnUpBlock2D"};

bool is_explicit_null(const Config& c, const std::string& key) {
  return c.json().contains(key) && c.json()[key].is_null();
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// Options whose diffusers code paths (class/addition embeddings, GLIGEN, ...) are not implemented:
// a config that sets them must not load as if they were absent.
void require_null(const Config& c, const std::string& key) {
  if (c.has(key)) c.bad_value(key, "is not supported yet (only null)");
}
template <typename T>
void require_default(const Config& c, const std::string& key, const T& supported) {
  if (c.has(key) && c.get<T>(key) != supported)
    c.bad_value(key, str("is not supported yet (only ", json(supported).dump(), ")"));
}

// diffusers' UNetRes* aliases name the same blocks (get_down_block / get_up_block strip the prefix).
std::vector<std::string> block_types(const Config& c, const std::string& key, const std::vector<std::string>& fallback,
                                     const std::vector<std::string>& supported) {
  auto types = c.get<std::vector<std::string>>(key, fallback);
  for (auto& t : types) {
    if (t.rfind("UNetRes", 0) == 0) t = t.substr(7);
    if (std::find(supported.begin(), supported.end(), t) == supported.end())
      c.bad_value(key, str("block type '", t, "' is not supported yet (supported: ", join(supported), ")"));
  }
  return types;
}

std::vector<bool> bool_or_list(const Config& c, const std::string& key, size_t levels) {
  if (!c.has(key)) return std::vector<bool>(levels, false);
  const json& v = c.json()[key];
  if (v.is_boolean()) return std::vector<bool>(levels, v.get<bool>());
  if (!v.is_array() || v.size() != levels) c.bad_value(key, str("expected a bool or a list of ", levels, " bools"));
  std::vector<bool> out;
  for (const auto& e : v) {
    if (!e.is_boolean()) c.bad_value(key, "expected a list of bools");
    out.push_back(e.get<bool>());
  }
  return out;
}

// One transformer_layers_per_block entry for a block of `resnets` resnets: an int applies to each
// Transformer2DModel, a list gives one count per resnet.
std::vector<int> transformer_layers_entry(const Config& c, const std::string& key, const json& e, size_t resnets) {
  if (e.is_number_integer()) return std::vector<int>(resnets, e.get<int>());
  if (!e.is_array() || e.size() != resnets)
    c.bad_value(key, str("each entry must be an integer or a list of ", resnets, " integers (one per resnet)"));
  std::vector<int> out;
  for (const auto& n : e) {
    if (!n.is_number_integer()) c.bad_value(key, "expected integers");
    out.push_back(n.get<int>());
  }
  return out;
}

void parse_transformer_layers(const Config& c, UNetConfig& u) {
  const std::string key = "transformer_layers_per_block", rkey = "reverse_transformer_layers_per_block";
  size_t levels = u.levels();
  json per_level = c.has(key) ? c.json()[key] : json(1);
  if (per_level.is_number_integer()) per_level = json(std::vector<json>(levels, per_level));
  if (!per_level.is_array() || per_level.size() != levels)
    c.bad_value(key, str("expected an integer or a list of ", levels, " entries, one per level"));
  bool nested = std::any_of(per_level.begin(), per_level.end(), [](const json& e) { return e.is_array(); });
  if (nested && !c.has(rkey))
    c.bad_value(key, "per-resnet lists need reverse_transformer_layers_per_block (as in diffusers)");

  for (size_t i = 0; i < levels; ++i)
    u.down_transformer_layers.push_back(
        transformer_layers_entry(c, key, per_level[i], static_cast<size_t>(u.layers_per_block[i])));
  // UNetMidBlock2DCrossAttn has one Transformer2DModel; a list entry gives it its first count.
  const json& last = per_level[levels - 1];
  u.mid_transformer_layers = {last.is_array() ? last.at(0).get<int>() : last.get<int>()};

  json up_per_level = c.has(rkey) ? c.json()[rkey] : json(std::vector<json>(per_level.rbegin(), per_level.rend()));
  const std::string& up_key = c.has(rkey) ? rkey : key;
  if (!up_per_level.is_array() || up_per_level.size() != levels)
    c.bad_value(up_key, str("expected a list of ", levels, " entries, one per up block"));
  for (size_t j = 0; j < levels; ++j) {
    size_t resnets = static_cast<size_t>(u.layers_per_block[levels - 1 - j]) + 1;
    u.up_transformer_layers.push_back(transformer_layers_entry(c, up_key, up_per_level[j], resnets));
  }
}

void reject_unsupported(const Config& c) {
  if (c.has("_class_name") && c.get<std::string>("_class_name") != "UNet2DConditionModel")
    c.bad_value("_class_name", "expected UNet2DConditionModel");
  for (const char* key : {"class_embed_type", "num_class_embeds", "addition_embed_type", "encoder_hid_dim",
                          "encoder_hid_dim_type", "time_cond_proj_dim"})
    require_null(c, key);
  require_default(c, "time_embedding_type", std::string("positional"));
  require_default(c, "resnet_time_scale_shift", std::string("default"));
  require_default(c, "attention_type", std::string("default"));
  require_default(c, "dual_cross_attention", false);
  require_default(c, "class_embeddings_concat", false);
  if (is_explicit_null(c, "norm_num_groups"))
    c.bad_value("norm_num_groups", "null (no output norm) is not supported yet");
}

void parse_levels(const Config& c, UNetConfig& u) {
  u.block_out_channels = c.get<std::vector<int64_t>>("block_out_channels", {320, 640, 1280, 1280});
  size_t levels = u.levels();
  if (levels == 0) c.bad_value("block_out_channels", "needs at least one level");
  u.down_block_types = block_types(
      c, "down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"},
      kDownBlockTypes);
  u.up_block_types =
      block_types(c, "up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"},
                  kUpBlockTypes);
  if (u.down_block_types.size() != levels)
    c.bad_value("down_block_types",
                str("has ", u.down_block_types.size(), " entries but block_out_channels has ", levels));
  if (u.up_block_types.size() != levels)
    c.bad_value("up_block_types", str("has ", u.up_block_types.size(), " entries but block_out_channels has ", levels));
  for (int64_t ch : u.block_out_channels)
    if (ch <= 0 || ch % u.norm_num_groups != 0)
      c.bad_value("block_out_channels", str(ch, " channels do not split into norm_num_groups = ", u.norm_num_groups));

  u.layers_per_block = c.int_or_list("layers_per_block", levels, 2);
  for (int n : u.layers_per_block)
    if (n < 1) c.bad_value("layers_per_block", "every level needs at least one resnet");
  // diffusers: num_attention_heads = num_attention_heads or attention_head_dim.
  u.num_attention_heads = c.has("num_attention_heads") ? c.int_or_list("num_attention_heads", levels, 8)
                                                       : c.int_or_list("attention_head_dim", levels, 8);
  const std::string heads_key = c.has("num_attention_heads") ? "num_attention_heads" : "attention_head_dim";
  for (size_t i = 0; i < levels; ++i)
    if (u.num_attention_heads[i] < 1 || u.num_attention_heads[i] > u.block_out_channels[i])
      c.bad_value(heads_key, str("level ", i, ": ", u.num_attention_heads[i], " heads for ", u.block_out_channels[i],
                                 " channels"));
  for (int d : c.int_or_list("cross_attention_dim", levels, 1280)) {
    c.require_positive("cross_attention_dim", d);
    u.cross_attention_dim.push_back(d);
  }
  u.only_cross_attention = bool_or_list(c, "only_cross_attention", levels);
  parse_transformer_layers(c, u);
}

}  // namespace

UNetConfig UNetConfig::load(const Config& c) {
  reject_unsupported(c);
  UNetConfig u;
  u.source = c.source();
  u.in_channels = c.get<int64_t>("in_channels", 4);
  u.out_channels = c.get<int64_t>("out_channels", 4);
  u.center_input_sample = c.get<bool>("center_input_sample", false);
  u.sample_size = c.get<int>("sample_size", 0);
  u.norm_num_groups = c.get<int>("norm_num_groups", 32);
  c.require_positive("norm_num_groups", u.norm_num_groups);
  u.norm_eps = c.get<float>("norm_eps", 1e-5f);
  parse_levels(c, u);

  // mid_block_type: absent means diffusers' default, an explicit null means no mid block.
  if (!is_explicit_null(c, "mid_block_type")) {
    u.mid_block_type = c.get<std::string>("mid_block_type", "UNetMidBlock2DCrossAttn");
    if (u.mid_block_type != "UNetMidBlock2DCrossAttn")
      c.bad_value("mid_block_type", "is not supported yet (supported: UNetMidBlock2DCrossAttn or null)");
  }
  u.mid_block_scale_factor = c.get<float>("mid_block_scale_factor", 1.0f);

  u.use_linear_projection = c.get<bool>("use_linear_projection", false);
  u.upcast_attention = c.get<bool>("upcast_attention", false);
  u.act = read_activation(c, "act_fn", "silu");
  u.downsample_padding = c.get<int>("downsample_padding", 1);
  if (u.downsample_padding != 0 && u.downsample_padding != 1)
    c.bad_value("downsample_padding", "only 0 and 1 are supported");
  u.conv_in_kernel = c.get<int>("conv_in_kernel", 3);
  u.conv_out_kernel = c.get<int>("conv_out_kernel", 3);
  if (u.conv_in_kernel < 1 || u.conv_in_kernel % 2 == 0) c.bad_value("conv_in_kernel", "must be a positive odd size");
  if (u.conv_out_kernel < 1 || u.conv_out_kernel % 2 == 0)
    c.bad_value("conv_out_kernel", "must be a positive odd size");

  u.flip_sin_to_cos = c.get<bool>("flip_sin_to_cos", true);
  u.freq_shift = c.get<float>("freq_shift", 0.0f);
  u.time_embed_dim = c.get<int64_t>("time_embedding_dim", 4 * u.block_out_channels[0]);
  u.timestep_post_act = read_activation(c, "timestep_post_act", "");
  u.time_embedding_act = read_activation(c, "time_embedding_act_fn", "");
  return u;
}

}  // namespace sdrt
