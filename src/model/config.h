// Model configuration: the fields of spec sections 1–7, resolved from an architecture name, a size
// preset and overrides, and written fully resolved into every checkpoint's config.json.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace txs {

enum class LayerType { Ssd, Attention, Mamba2 };
const char* layer_type_name(LayerType t);
// How SSD layers see position (spec section 7): Unified RoPE on C and B, a short causal conv (the
// Mamba-2 way), or nothing; attention layers: Unified RoPE on q and k, or nothing.
enum class SsmPosition { Rope, Conv, None };
enum class AttentionPosition { Rope, None };
const char* position_name(SsmPosition p);
const char* position_name(AttentionPosition p);
SsmPosition parse_ssm_position(const std::string& s);              // throws on anything else
AttentionPosition parse_attention_position(const std::string& s);  // throws on anything else

struct ModelConfig {
  std::string arch = "transxssm";
  int64_t vocab_size = 50304;
  int64_t hidden_size = 256;
  int64_t intermediate_size = 768;
  int64_t num_hidden_layers = 8;
  int64_t num_attention_heads = 4;
  int64_t num_key_value_heads = 4;
  int64_t head_dim = 64;        // P = hidden_size / num_attention_heads
  int64_t ssm_state_size = 64;  // N (default P: then RoPE uses one table for everything)
  std::vector<LayerType> layer_types;
  int64_t attn_layer_period = 8;
  int64_t attn_layer_offset = 7;
  SsmPosition ssm_position = SsmPosition::Rope;
  AttentionPosition attention_position = AttentionPosition::Rope;
  int64_t ssm_chunk_size = 256;
  int64_t conv_kernel = 4;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  bool residual_scale = true;
  bool use_dt_bias = true;
  bool tie_word_embeddings = true;
  double initializer_range = 0.02;
  int64_t max_position_embeddings = 4096;
  // Mamba-2 mixer (baselines only), spec section 6.
  int64_t mamba_expand = 2;
  int64_t mamba_head_dim = 64;
  int64_t mamba_d_state = 128;
  int64_t mamba_n_groups = 1;
  double mamba_norm_eps = 1e-5;

  // Derived sizes.
  int64_t ssd_inner() const { return num_attention_heads * head_dim; }  // H·P
  int64_t ssd_bc() const { return num_attention_heads * ssm_state_size; }  // H·N
  int64_t mamba_inner() const { return mamba_expand * hidden_size; }  // E·d
  int64_t mamba_heads() const { return mamba_inner() / mamba_head_dim; }
  int64_t mamba_conv_channels() const { return mamba_inner() + 2 * mamba_n_groups * mamba_d_state; }
  int64_t ssd_conv_channels() const { return ssd_inner() + 2 * ssd_bc(); }
  int64_t count(LayerType t) const;

  // Checks every field and their combinations; throws txs::Error with a one-line reason.
  void validate() const;
  nlohmann::ordered_json to_json() const;  // fully resolved, with model_type "transxssm"
};

// Architecture names of spec section 7 and size presets.
const std::vector<std::string>& architecture_names();
const std::vector<std::string>& size_names();

// Builds a config: start from the defaults, apply the `arch` preset, then the `size` preset, then every other
// field of `overrides` (unknown fields are an error). `overrides` may itself contain "arch" and "size".
ModelConfig resolve_config(const std::string& arch, const std::string& size,
                           const nlohmann::json& overrides = nlohmann::json::object());
// Reads a config file (either a checkpoint's resolved config.json or a user file naming arch/size + overrides).
ModelConfig load_config_file(const std::string& path);
nlohmann::json read_json_file(const std::string& path);

}  // namespace txs
