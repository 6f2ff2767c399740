#include "model/params.h"

#include "core/error.h"

namespace txs {

int ParamStore::add(std::string name, std::vector<int64_t> shape, bool decay, bool matmul) {
  if (weights_.size()) fail("internal: parameter '{}' registered after allocation", name);
  Param p;
  p.name = std::move(name);
  p.shape = std::move(shape);
  p.numel = 1;
  for (auto s : p.shape) p.numel *= s;
  p.offset = total_;
  p.decay = decay;
  p.matmul = matmul;
  total_ += p.numel;
  params_.push_back(std::move(p));
  return int(params_.size()) - 1;
}

void ParamStore::allocate() {
  weights_.resize(size_t(total_));
  grads_.resize(size_t(total_));
  weights_.zero();
  grads_.zero();
}

const Param* ParamStore::find(const std::string& name) const {
  for (auto& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

}  // namespace txs
