#include "model/params.h"

#include "core/error.h"

namespace txs {

ParamRef ParamStore::add(ParamSpec spec) {
  if (weights_.size()) fail("internal: parameter '{}' registered after allocation", spec.name);
  Param p;
  static_cast<ParamSpec&>(p) = std::move(spec);
  p.numel = 1;
  for (auto s : p.shape) p.numel *= s;
  p.offset = total_;
  total_ += p.numel;
  params_.push_back(std::move(p));
  return ParamRef{int(params_.size()) - 1};
}

void ParamStore::allocate() {
  weights_.resize(total_);
  grads_.resize(total_);
  weights_.zero();
  grads_.zero();
}

Tensor ParamStore::view(const DeviceBuffer& buf, ParamRef r, int count) const {
  if (!r) return Tensor{};
  const Param& first = params_.at(size_t(r.index));
  const int64_t cols = first.shape.size() == 1 ? first.numel : first.numel / first.shape[0];
  int64_t rows = 0;
  for (int k = 0; k < count; ++k) {
    const Param& p = params_.at(size_t(r.index + k));
    if (p.shape.size() == 1 ? count != 1 : p.numel / p.shape[0] != cols)
      fail("internal: parameters fused with '{}' differ in width", first.name);
    rows += p.shape.size() == 1 ? 1 : p.shape[0];
  }
  (void)buf.flat().col_slice(first.offset, rows * cols);  // bounds check
  Tensor t;
  t.data = static_cast<float*>(buf.raw()) + first.offset;
  t.dtype = DType::F32, t.device = be_.device();
  t.rows = rows, t.cols = cols, t.stride = cols;
  return t;
}

const Param* ParamStore::find(const std::string& name) const {
  for (auto& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

}  // namespace txs
