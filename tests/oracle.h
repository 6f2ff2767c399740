// Test helper: asks an independent PyTorch implementation (tests/reference/oracle_<kernel>.py, run by
// Debian's /usr/bin/python3 with python3-torch) for a kernel's outputs and gradients, in float64.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/rng.h"
#include "model/safetensors.h"

namespace txs::test {

struct OracleTensor {
  std::vector<int64_t> shape;
  std::vector<double> data;
};
using OracleTensors = std::map<std::string, OracleTensor>;

inline std::string scratch_dir(const std::string& tag) {
  auto dir = std::filesystem::temp_directory_path() /
             ("transxssm_test_" + tag + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

// Inputs go as F64 tensors, attrs as JSON in the metadata; the oracle returns F64 tensors by name.
inline OracleTensors torch_oracle(const std::string& kernel, const OracleTensors& inputs,
                                  const nlohmann::json& attrs = nlohmann::json::object()) {
  const std::string dir = scratch_dir("oracle_" + kernel);
  const std::string in = dir + "/in.safetensors", out = dir + "/out.safetensors";
  SafetensorsWriter w;
  for (auto& [name, t] : inputs) w.add(name, FileDType::F64, t.shape, t.data.data());
  w.set_metadata("attrs", attrs.dump());
  w.write(in);
  const std::string cmd = std::string("/usr/bin/python3 ") + TRANSXSSM_SOURCE_DIR +
                          "/tests/reference/kernel_oracle.py " + kernel + " " + in + " " + out;
  const int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << "oracle failed: " << cmd;
  OracleTensors result;
  if (rc != 0) return result;
  SafetensorsReader r(out);
  for (auto& [name, info] : r.tensors()) result[name] = {info.shape, r.read_f64(name)};
  std::filesystem::remove_all(dir);
  return result;
}

inline std::vector<double> random_vector(Rng& rng, size_t n, double scale = 1.0) {
  std::vector<double> v(n);
  for (auto& x : v) x = scale * rng.normal();
  return v;
}

// max |a−b| / max(max|b|, floor): a relative error that a wrong formula cannot pass.
inline double rel_error(const std::vector<double>& a, const std::vector<double>& b, double floor = 1e-12) {
  double diff = 0, ref = floor;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    ref = std::max(ref, std::abs(b[i]));
  }
  return a.size() == b.size() ? diff / ref : INFINITY;
}

template <class T>
std::vector<double> to_double(const T* p, size_t n) {
  return std::vector<double>(p, p + n);
}

}  // namespace txs::test
