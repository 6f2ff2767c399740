#include "study/match.h"

#include <cmath>
#include <fmt/format.h>

#include "core/error.h"

namespace txs::study {

static int64_t mixer_params(const ModelConfig& c, LayerType t) {
  const int64_t d = c.hidden_size;
  switch (t) {
    case LayerType::Attention: {
      const int64_t hp = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
      return hp * d + 2 * kv * d + d * hp;
    }
    case LayerType::Ssd: {
      const int64_t H = c.num_attention_heads, xbc = c.ssd_conv_channels();
      int64_t n = (xbc + H) * d + H /*A_log*/ + d * c.ssd_inner();
      if (c.use_dt_bias) n += H;
      if (c.ssm_position == SsmPosition::Conv) n += xbc * c.conv_kernel + xbc + H;  // conv weight, bias, D
      return n;
    }
    case LayerType::Mamba2: {
      const int64_t Ed = c.mamba_inner(), Hm = c.mamba_heads(), ch = c.mamba_conv_channels();
      const int64_t in_width = 2 * Ed + 2 * c.mamba_n_groups * c.mamba_d_state + Hm;
      int64_t n = in_width * d + ch * c.conv_kernel + ch + Hm /*A_log*/ + Hm /*D*/ + Ed /*norm*/ + d * Ed;
      if (c.use_dt_bias) n += Hm;
      return n;
    }
  }
  return 0;
}

int64_t count_params(const ModelConfig& c) {
  const int64_t d = c.hidden_size;
  int64_t n = c.vocab_size * d + d;  // embedding, final norm
  if (!c.tie_word_embeddings) n += c.vocab_size * d;
  for (LayerType t : c.layer_types) {
    n += 2 * d;                              // two RMSNorm gains
    if (c.residual_scale) n += 2 * d;        // two residual scales
    n += mixer_params(c, t);
    n += 3 * d * c.intermediate_size;        // SwiGLU gate, up, down
  }
  return n;
}

nlohmann::json Matching::to_json() const {
  nlohmann::json a = nlohmann::json::object();
  for (auto& m : archs)
    a[m.arch] = {{"intermediate_size", m.intermediate_size}, {"preset_intermediate_size", m.preset_intermediate_size},
                 {"params", m.params}, {"rel_diff", m.rel_diff}};
  return {{"reference_arch", reference_arch}, {"reference_params", reference_params}, {"rule", rule},
          {"max_rel_diff", kMaxParamMismatch}, {"width_multiple", kWidthMultiple}, {"archs", a}};
}

Matching match_widths(const std::vector<std::string>& archs, const std::string& size, const nlohmann::json& base) {
  Matching m;
  m.rule = fmt::format(
      "reference: the {} preset at size {} (intermediate_size unchanged); every other architecture keeps d_model, "
      "layers, heads and vocabulary and sets intermediate_size to the multiple of {} nearest to the solution of "
      "params(arch, I) = params(reference) (params are affine in I: 3*d*L per unit); |difference| <= {}% asserted",
      m.reference_arch, size, kWidthMultiple, 100 * kMaxParamMismatch);
  const ModelConfig ref = resolve_config(m.reference_arch, size, base);
  m.reference_params = count_params(ref);
  for (const std::string& arch : archs) {
    ModelConfig c = resolve_config(arch, size, base);
    MatchedArch r;
    r.arch = arch;
    r.preset_intermediate_size = c.intermediate_size;
    r.overrides = base;
    if (arch == m.reference_arch) {
      r.intermediate_size = c.intermediate_size;
    } else {
      c.intermediate_size = 0;
      const int64_t fixed = count_params(c);
      const double per_unit = 3.0 * double(c.hidden_size) * double(c.layer_types.size());
      const double exact = double(m.reference_params - fixed) / per_unit;
      int64_t I = int64_t(std::floor(exact / double(kWidthMultiple))) * kWidthMultiple;
      if (exact - double(I) > double(kWidthMultiple) / 2) I += kWidthMultiple;  // nearest, ties to the smaller
      if (I < kWidthMultiple)
        fail("study: {} at size {} has {} parameters without its MLP, more than the reference's {}: widths "
             "cannot be matched by intermediate_size", arch, size, fixed, m.reference_params);
      r.intermediate_size = I;
      r.overrides["intermediate_size"] = I;
    }
    r.params = count_params(resolve_config(arch, size, r.overrides));
    r.rel_diff = double(r.params - m.reference_params) / double(m.reference_params);
    if (std::abs(r.rel_diff) > kMaxParamMismatch)
      fail("study: {} has {} parameters, {:.2f}% from the reference's {} (limit {}%)", arch, r.params,
           100 * r.rel_diff, m.reference_params, 100 * kMaxParamMismatch);
    m.archs.push_back(std::move(r));
  }
  return m;
}

}  // namespace txs::study
