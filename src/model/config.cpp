#include "model/config.h"

#include <set>

#include "core/error.h"
#include "core/json.h"
#include "model/safetensors.h"

namespace txs {

const char* layer_type_name(LayerType t) {
  switch (t) {
    case LayerType::Ssd: return "ssd";
    case LayerType::Attention: return "attention";
    case LayerType::Mamba2: return "mamba2";
  }
  return "?";
}

static LayerType parse_layer_type(const std::string& s) {
  if (s == "ssd") return LayerType::Ssd;
  if (s == "attention") return LayerType::Attention;
  if (s == "mamba2") return LayerType::Mamba2;
  fail("config: unknown layer type '{}' (expected ssd, attention or mamba2)", s);
}

int64_t ModelConfig::count(LayerType t) const {
  int64_t n = 0;
  for (auto l : layer_types) n += l == t;
  return n;
}

const std::vector<std::string>& architecture_names() {
  static const std::vector<std::string> names = {"transxssm", "transformer", "mamba2",
                                                 "jamba", "hybrid-conv", "hybrid-nope"};
  return names;
}

const std::vector<std::string>& size_names() {
  static const std::vector<std::string> names = {"tiny", "320m", "1.3b"};
  return names;
}

// Layer types implied by the periodic rule of spec section 1.
static std::vector<LayerType> periodic_layers(int64_t n, int64_t period, int64_t offset, LayerType other) {
  std::vector<LayerType> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(i % period == offset ? LayerType::Attention : other);
  return v;
}

namespace {
// Which field values each architecture fixes (spec section 7). `mamba` says whether SSM layers are Mamba-2.
struct ArchPreset {
  bool all_attention = false, mamba = false;
  int64_t offset = 7;
  SsmPosition ssm_position = SsmPosition::Rope;
  AttentionPosition attention_position = AttentionPosition::Rope;
  bool all_ssm = false;
};
ArchPreset arch_preset(const std::string& arch) {
  if (arch == "transxssm") return {};
  using S = SsmPosition;
  using A = AttentionPosition;
  if (arch == "transformer") return {true, false, 7, S::Rope, A::Rope};
  if (arch == "mamba2") return {false, true, 7, S::Conv, A::Rope, true};
  if (arch == "jamba") return {false, true, 4, S::Conv, A::None};
  if (arch == "hybrid-conv") return {false, false, 7, S::Conv, A::Rope};
  if (arch == "hybrid-nope") return {false, false, 7, S::None, A::Rope};
  std::string names;
  for (auto& n : architecture_names()) names += (names.empty() ? "" : ", ") + n;
  fail("config: unknown architecture '{}' (expected one of {})", arch, names);
}
}  // namespace

static void apply_size(ModelConfig& c, const std::string& size) {
  if (size == "tiny") {
    c.hidden_size = 256, c.intermediate_size = 768, c.num_hidden_layers = 8, c.num_attention_heads = 4;
    c.num_key_value_heads = 4, c.mamba_d_state = 64, c.max_position_embeddings = 1024;
  } else if (size == "320m") {
    c.hidden_size = 1024, c.intermediate_size = 2048, c.num_hidden_layers = 32, c.num_attention_heads = 8;
    c.num_key_value_heads = 8, c.max_position_embeddings = 4096;
  } else if (size == "1.3b") {
    c.hidden_size = 2048, c.intermediate_size = 4096, c.num_hidden_layers = 32, c.num_attention_heads = 16;
    c.num_key_value_heads = 16, c.max_position_embeddings = 4096;
  } else {
    fail("config: unknown size '{}' (expected tiny, 320m or 1.3b)", size);
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.ssm_state_size = c.head_dim;
}

template <class T>
static T get_field(const nlohmann::json& j, const char* key) {
  try {
    return j.get<T>();
  } catch (const std::exception&) {
    fail("config: field '{}' has the wrong type ({})", key, json_excerpt(j));
  }
}

// Integer fields are sizes, counts and offsets: JSON integers (or floats with no fractional part, e.g.
// 256.0) within the 32-bit range. 256.5, 1e30 or 2^64+1 would otherwise be truncated or wrap around.
static int64_t get_int_field(const nlohmann::json& j, const char* key) {
  constexpr int64_t kLimit = int64_t(1) << 31;
  if (j.is_number_unsigned()) {
    const uint64_t u = j.get<uint64_t>();
    if (u >= uint64_t(kLimit)) fail("config: field '{}' = {} is out of range (at most {})", key, u, kLimit - 1);
    return int64_t(u);
  }
  if (j.is_number_integer()) {
    const int64_t v = j.get<int64_t>();
    if (v >= kLimit || v < -kLimit) fail("config: field '{}' = {} is out of range (at most {} in magnitude)", key, v, kLimit - 1);
    return v;
  }
  if (j.is_number_float()) {
    const double d = j.get<double>();
    if (!(d >= -double(kLimit) && d < double(kLimit)))
      fail("config: field '{}' = {} is out of range (at most {} in magnitude)", key, json_excerpt(j), kLimit - 1);
    if (d != double(int64_t(d))) fail("config: field '{}' must be an integer, got {}", key, json_excerpt(j));
    return int64_t(d);
  }
  fail("config: field '{}' must be an integer, got {}", key, json_excerpt(j));
}

const char* position_name(SsmPosition p) {
  switch (p) {
    case SsmPosition::Rope: return "rope";
    case SsmPosition::Conv: return "conv";
    case SsmPosition::None: return "none";
  }
  return "?";
}

const char* position_name(AttentionPosition p) { return p == AttentionPosition::Rope ? "rope" : "none"; }

SsmPosition parse_ssm_position(const std::string& s) {
  if (s == "rope") return SsmPosition::Rope;
  if (s == "conv") return SsmPosition::Conv;
  if (s == "none") return SsmPosition::None;
  fail("config: ssm_position must be rope, conv or none, got '{}'", s);
}

AttentionPosition parse_attention_position(const std::string& s) {
  if (s == "rope") return AttentionPosition::Rope;
  if (s == "none") return AttentionPosition::None;
  fail("config: attention_position must be rope or none, got '{}'", s);
}

// Far beyond any real model; bounds the layer list built from num_hidden_layers.
constexpr int64_t kMaxLayers = 1 << 16;

ModelConfig resolve_config(const std::string& arch_in, const std::string& size_in, const nlohmann::json& overrides) {
  if (!overrides.is_object()) fail("config: expected a JSON object");
  std::string arch = arch_in, size = size_in;
  if (overrides.contains("arch")) arch = get_field<std::string>(overrides["arch"], "arch");
  if (overrides.contains("size")) size = get_field<std::string>(overrides["size"], "size");
  if (arch.empty()) arch = "transxssm";
  ModelConfig c;
  c.arch = arch;
  const ArchPreset preset = arch_preset(arch);
  if (!size.empty()) apply_size(c, size);
  c.ssm_position = preset.ssm_position;
  c.attention_position = preset.attention_position;
  c.attn_layer_offset = preset.offset;

  bool explicit_layers = false, explicit_head_dim = false, explicit_state = false;
  for (auto& [key, v] : overrides.items()) {
    const char* k = key.c_str();
    if (key == "arch" || key == "size" || key == "model_type") {
      if (key == "model_type" && v != "transxssm") fail("config: model_type must be \"transxssm\", got {}", json_excerpt(v));
    } else if (key == "vocab_size") c.vocab_size = get_int_field(v, k);
    else if (key == "hidden_size") c.hidden_size = get_int_field(v, k);
    else if (key == "intermediate_size") c.intermediate_size = get_int_field(v, k);
    else if (key == "num_hidden_layers") c.num_hidden_layers = get_int_field(v, k);
    else if (key == "num_attention_heads") c.num_attention_heads = get_int_field(v, k);
    else if (key == "num_key_value_heads") c.num_key_value_heads = get_int_field(v, k);
    else if (key == "head_dim") c.head_dim = get_int_field(v, k), explicit_head_dim = true;
    else if (key == "ssm_state_size") c.ssm_state_size = get_int_field(v, k), explicit_state = true;
    else if (key == "layer_types") {
      if (!v.is_array()) fail("config: layer_types must be a list");
      c.layer_types.clear();
      for (auto& t : v) c.layer_types.push_back(parse_layer_type(get_field<std::string>(t, k)));
      explicit_layers = true;
    } else if (key == "attn_layer_period") c.attn_layer_period = get_int_field(v, k);
    else if (key == "attn_layer_offset") c.attn_layer_offset = get_int_field(v, k);
    else if (key == "ssm_position") c.ssm_position = parse_ssm_position(get_field<std::string>(v, k));
    else if (key == "attention_position")
      c.attention_position = parse_attention_position(get_field<std::string>(v, k));
    else if (key == "ssm_chunk_size") c.ssm_chunk_size = get_int_field(v, k);
    else if (key == "conv_kernel") c.conv_kernel = get_int_field(v, k);
    else if (key == "rope_theta") c.rope_theta = get_field<double>(v, k);
    else if (key == "rms_norm_eps") c.rms_norm_eps = get_field<double>(v, k);
    else if (key == "residual_scale") c.residual_scale = get_field<bool>(v, k);
    else if (key == "use_dt_bias") c.use_dt_bias = get_field<bool>(v, k);
    else if (key == "tie_word_embeddings") c.tie_word_embeddings = get_field<bool>(v, k);
    else if (key == "initializer_range") c.initializer_range = get_field<double>(v, k);
    else if (key == "max_position_embeddings") c.max_position_embeddings = get_int_field(v, k);
    else if (key == "mamba_expand") c.mamba_expand = get_int_field(v, k);
    else if (key == "mamba_head_dim") c.mamba_head_dim = get_int_field(v, k);
    else if (key == "mamba_d_state") c.mamba_d_state = get_int_field(v, k);
    else if (key == "mamba_n_groups") c.mamba_n_groups = get_int_field(v, k);
    else if (key == "mamba_norm_eps") c.mamba_norm_eps = get_field<double>(v, k);
    else fail("config: unknown field '{}'", key);
  }
  if (c.num_attention_heads <= 0) fail("config: num_attention_heads must be positive");
  if (!explicit_head_dim) c.head_dim = c.hidden_size / c.num_attention_heads;
  if (!explicit_state) c.ssm_state_size = c.head_dim;
  if (!explicit_layers) {
    if (c.attn_layer_period <= 0) fail("config: attn_layer_period must be positive");
    if (c.num_hidden_layers > kMaxLayers)
      fail("config: num_hidden_layers {} is too large (at most {})", c.num_hidden_layers, kMaxLayers);
    const size_t n = size_t(std::max<int64_t>(c.num_hidden_layers, 0));
    if (preset.all_attention)
      c.layer_types.assign(n, LayerType::Attention);
    else if (preset.all_ssm)
      c.layer_types.assign(n, LayerType::Mamba2);
    else
      c.layer_types = periodic_layers(c.num_hidden_layers, c.attn_layer_period, c.attn_layer_offset,
                                      preset.mamba ? LayerType::Mamba2 : LayerType::Ssd);
  }
  c.validate();
  return c;
}

void ModelConfig::validate() const {
  auto positive = [](int64_t v, const char* name) {
    if (v <= 0) fail("config: {} must be positive, got {}", name, v);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_key_value_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  positive(ssm_state_size, "ssm_state_size");
  positive(ssm_chunk_size, "ssm_chunk_size");
  positive(conv_kernel, "conv_kernel");
  positive(max_position_embeddings, "max_position_embeddings");
  if (vocab_size > (int64_t(1) << 31) - 1) fail("config: vocab_size {} is too large", vocab_size);
  if (int64_t(layer_types.size()) != num_hidden_layers)
    fail("config: layer_types has {} entries but num_hidden_layers is {}", layer_types.size(), num_hidden_layers);
  if (num_attention_heads % num_key_value_heads)
    fail("config: num_key_value_heads {} must divide num_attention_heads {}", num_key_value_heads,
         num_attention_heads);
  if (head_dim % 2) fail("config: head_dim {} must be even (rotate-half RoPE)", head_dim);
  if (ssm_state_size % 2) fail("config: ssm_state_size {} must be even (rotate-half RoPE)", ssm_state_size);
  if (!(rms_norm_eps > 0) || !(mamba_norm_eps > 0)) fail("config: norm eps must be positive");
  if (!(rope_theta > 1)) fail("config: rope_theta must be > 1, got {}", rope_theta);
  if (!(initializer_range >= 0)) fail("config: initializer_range must be ≥ 0");
  if (count(LayerType::Mamba2)) {
    positive(mamba_expand, "mamba_expand");
    positive(mamba_head_dim, "mamba_head_dim");
    positive(mamba_d_state, "mamba_d_state");
    positive(mamba_n_groups, "mamba_n_groups");
    if (mamba_inner() % mamba_head_dim)
      fail("config: mamba_head_dim {} must divide mamba_expand*hidden_size {}", mamba_head_dim, mamba_inner());
    if (mamba_heads() % mamba_n_groups)
      fail("config: mamba_n_groups {} must divide the Mamba-2 head count {}", mamba_n_groups, mamba_heads());
  }
}

nlohmann::ordered_json ModelConfig::to_json() const {
  nlohmann::ordered_json j;
  j["model_type"] = "transxssm";
  j["arch"] = arch;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["ssm_state_size"] = ssm_state_size;
  std::vector<std::string> types;
  for (auto t : layer_types) types.push_back(layer_type_name(t));
  j["layer_types"] = types;
  j["attn_layer_period"] = attn_layer_period;
  j["attn_layer_offset"] = attn_layer_offset;
  j["ssm_position"] = position_name(ssm_position);
  j["attention_position"] = position_name(attention_position);
  j["ssm_chunk_size"] = ssm_chunk_size;
  j["conv_kernel"] = conv_kernel;
  j["rope_theta"] = rope_theta;
  j["rms_norm_eps"] = rms_norm_eps;
  j["residual_scale"] = residual_scale;
  j["use_dt_bias"] = use_dt_bias;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["initializer_range"] = initializer_range;
  j["max_position_embeddings"] = max_position_embeddings;
  j["mamba_expand"] = mamba_expand;
  j["mamba_head_dim"] = mamba_head_dim;
  j["mamba_d_state"] = mamba_d_state;
  j["mamba_n_groups"] = mamba_n_groups;
  j["mamba_norm_eps"] = mamba_norm_eps;
  return j;
}

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_file(path);
  return parse_json_bounded(text, path);
}

ModelConfig load_config_file(const std::string& path) {
  auto j = read_json_file(path);
  if (!j.is_object()) fail("{}: config must be a JSON object", path);
  try {
    return resolve_config("", "", j);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
}

}  // namespace txs
