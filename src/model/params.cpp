#include "model/params.h"

#include "core/error.h"

#include <vector>

namespace txs {

const char* precision_name(Precision p) { return p == Precision::BF16 ? "bf16" : "fp32"; }

Precision parse_precision(const std::string& s) {
  if (s == "fp32" || s == "f32" || s == "float32") return Precision::F32;
  if (s == "bf16" || s == "bfloat16") return Precision::BF16;
  fail("unknown precision '{}' (expected fp32 or bf16)", s);
}

std::vector<float> download_floats(Backend& be, const Tensor& t) {
  std::vector<float> host(size_t(t.numel()));
  if (!host.empty()) be.download(t, host.data());
  return host;
}

const float* host_readable(Backend& be, const Tensor& t, std::vector<float>& staging) {
  if (!t.contiguous()) fail("internal: host_readable of a strided view");
  if (be.device() == Device::Cpu && t.device == Device::Cpu) return t.as<float>();
  staging = download_floats(be, t);
  return staging.data();
}

float* ParamStore::host_pointer(const Tensor& t) const {
  if (be_.device() != Device::Cpu || t.device != Device::Cpu)
    fail("internal: a host pointer into {} memory (backend {}); download the values instead",
         device_name(t.device), be_.name());
  return t.as<float>();
}

ParamRef ParamStore::add(ParamSpec spec) {
  if (allocated_) fail("internal: parameter '{}' registered after allocation", spec.name);
  Param p;
  static_cast<ParamSpec&>(p) = std::move(spec);
  p.numel = 1;
  for (auto s : p.shape) p.numel *= s;
  p.low_precision = p.low_precision || p.matmul;  // a product's operand is one by definition
  p.offset = total_;
  total_ += p.numel;
  params_.push_back(std::move(p));
  return ParamRef{int(params_.size()) - 1};
}

void ParamStore::allocate(Precision precision, bool training) {
  if (allocated_) fail("internal: parameters allocated twice");
  precision_ = precision, training_ = training, allocated_ = true;
  const bool bf16 = precision == Precision::BF16;
  int64_t masters = 0, copies = 0;
  for (auto& p : params_) {
    const bool copy = bf16 && p.low_precision;
    p.compute_offset = copy ? copies : -1;
    copies += copy ? p.numel : 0;
    const bool master = training || !copy;
    p.master_offset = master ? masters : -1;
    masters += master ? p.numel : 0;
  }
  weights_.resize(masters);
  weights_.zero();
  compute_.resize(copies);
  compute_.zero();
  if (training) {
    grads_.resize(total_);
    grads_.zero();
  }
}

Tensor ParamStore::all_weights() const {
  if (weights_.size() != total_)
    fail("internal: this model keeps no fp32 copy of its bf16 matrices (bf16 inference); load it for training");
  return weights_.flat();
}

void ParamStore::refresh_compute() {
  for (auto& p : params_)
    if (p.compute_offset >= 0 && p.master_offset >= 0)
      be_.copy(weights_.flat().col_slice(p.master_offset, p.numel), compute_.flat().col_slice(p.compute_offset, p.numel));
}

void ParamStore::load(const Param& p, const float* host) {
  if (p.master_offset >= 0) be_.upload(host, weights_.flat().col_slice(p.master_offset, p.numel));
  if (p.compute_offset >= 0) {
    // Rounded on the host: bf16 inference never holds the fp32 matrix in backend memory.
    std::vector<bf16> rounded(size_t(p.numel));
    to_bf16(host, rounded.data(), p.numel);
    be_.upload(rounded.data(), compute_.flat().col_slice(p.compute_offset, p.numel));
  }
}

Tensor ParamStore::view(Which which, ParamRef r, int count) const {
  if (!r) return Tensor{};
  const Param& first = params_.at(size_t(r.index));
  const DeviceBuffer* buf = &weights_;
  int64_t offset = first.master_offset;
  if (which == Which::Grad) {
    buf = &grads_, offset = first.offset;
    if (!training_) fail("internal: '{}' has no gradient (model loaded for inference)", first.name);
  } else if (which == Which::Compute && first.compute_offset >= 0) {
    buf = &compute_, offset = first.compute_offset;
  } else if (offset < 0) {
    fail("internal: '{}' is kept in bf16 only (bf16 inference); its fp32 value is not available", first.name);
  }
  const int64_t cols = first.shape.size() == 1 ? first.numel : first.numel / first.shape[0];
  int64_t rows = 0;
  for (int k = 0; k < count; ++k) {
    const Param& p = params_.at(size_t(r.index + k));
    if (p.low_precision != first.low_precision) fail("internal: parameters fused with '{}' differ in precision", first.name);
    if (p.shape.size() == 1 ? count != 1 : p.numel / p.shape[0] != cols)
      fail("internal: parameters fused with '{}' differ in width", first.name);
    rows += p.shape.size() == 1 ? 1 : p.shape[0];
  }
  // Fused parameters are consecutive in every buffer (they share low_precision), so one view covers them.
  Tensor t = buf->flat().col_slice(offset, rows * cols);  // bounds check
  t.rows = rows, t.cols = cols, t.stride = cols;
  return t;
}

const Param* ParamStore::find(const std::string& name) const {
  for (auto& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

}  // namespace txs
