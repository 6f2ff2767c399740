// Backend conformance (in the pattern of llama.cpp's test-backend-ops): every op of the Backend interface
// (ops/backend.h), forward and backward, called through the interface on inputs uploaded into the backend's
// memory, downloaded, and checked against the float64 instantiations of the CPU kernels (cpu::<op><double>)
// run on the same inputs (already rounded to the backend's dtype). Ops without an fp64 template (optimizer,
// reductions, decay) are checked against plain double-precision formulas written here, memory ops exactly.
//
// A new backend runs the whole suite by adding one line to kBackends. Operands are laid out the way the
// model lays them out: q/k/v column slices of one qkv buffer, x/B/C/dt slices of one projection, gradients
// slices of one gradient buffer. Unused columns of every buffer are NaN: a kernel that reads them produces
// NaN, one that writes them is caught by check_padding. "Written" outputs start as NaN (so an op that
// accumulates into them fails); "accumulated" outputs start as random values that the reference includes.
//
// Error measure: max|got − ref| / max(1, max|ref|) per output, against a per-dtype, per-op-family tolerance
// (kTolerances). The worst error seen per op and output is printed at the end of the suite.
//
// Mixed precision (the bf16 column, "cpu-bf16"): an entry whose weight_dtype differs from its dtype runs the
// ops that accept a low-precision weight operand — linear_forward/backward (W), lm_head_cross_entropy and
// lm_head_logits (W), embedding_forward (the table) — with that operand stored in weight_dtype while
// activations and gradients stay in dtype, plus the memory ops on weight_dtype buffers (upload/download,
// copy, the f32 <-> bf16 converting copy, fill, DeviceBuffer, Arena). Every other op runs in fp32 in the
// bf16 mode (ops/backend.h), the same kernels as the f32 column: the column lists them in the table as
// "fp32 in bf16 mode" and skips them (GTEST_SKIP with that reason). Each product output is checked twice:
//  * against the fp64 template run on the inputs the product documents it sees (W rounded to bf16; the
//    activations rounded to bf16 too, on oneDNN's bf16 matmul and on the gemv path — x·Wᵀ with
//    ≤ cpu::kGemvMaxRows rows — alike) — what remains is fp32
//    accumulation error, held to the *F32* row: this pins the rounding the kernel does, not just its size;
//  * against the fp64 template on the unrounded inputs ("vs unrounded"), held to the BF16 row: the whole
//    cost of storing the weights in bf16, which is what a user of the bf16 mode sees.
// The LM head's dh and dW also go through the kernel's internal rounding of the softmax gradient to bf16,
// which a reference on rounded inputs cannot reproduce: those are held to the BF16 row in both checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "fake_device_backend.h"
#include "ops/backend.h"
#include "ops/cpu/adamw.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/conv1d.h"
#include "ops/cpu/cross_entropy.h"
#include "ops/cpu/elementwise.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/rmsnorm.h"
#include "ops/cpu/rope.h"
#include "ops/cpu/ssd_scan.h"
#include "ops/rope_table.h"
#include "ops/tensor.h"

namespace txs {
namespace {

// ---- the backends under test -------------------------------------------------------------------------------

struct BackendEntry {
  const char* name;
  Backend& (*factory)();
  DType dtype;         // the dtype of its float operands (activations, gradients)
  DType weight_dtype;  // the dtype of the products' weight operands (linear W, LM head W, embedding table)
  // Why this backend cannot run here ("" when it can): its tests are skipped with that reason. Null: always.
  std::string (*unavailable)() = nullptr;
};

// backend_for exists in every build; without CUDA (or a GPU) cuda_unavailable_reason() says why.
Backend& cuda_device_backend() { return backend_for(Device::Cuda); }
Backend& fake_device() { return test::fake_device_backend(); }

const BackendEntry kBackends[] = {
    {"cpu", cpu_backend, DType::F32, DType::F32},
    {"cpu-bf16", cpu_backend, DType::F32, DType::BF16},  // the bf16 mixed-precision mode
    // The fake device (fake_device_backend.h): the CPU kernels behind memory the host cannot touch. It proves
    // this suite reaches a device's memory only through upload/download, as the cuda columns need.
    {"fake-device", fake_device, DType::F32, DType::F32},
    {"fake-device-bf16", fake_device, DType::F32, DType::BF16},
    {"cuda", cuda_device_backend, DType::F32, DType::F32, cuda_unavailable_reason},
    {"cuda-bf16", cuda_device_backend, DType::F32, DType::BF16, cuda_unavailable_reason},
    // A new backend: one line here.
};

// The backend of an entry, or the CPU backend as a stand-in when the entry's backend cannot run here (SetUp
// then skips before anything uses it).
Backend& backend_of(const BackendEntry& e) {
  if (e.unavailable && !e.unavailable().empty()) return cpu_backend();
  return e.factory();
}

void PrintTo(const BackendEntry& e, std::ostream* os) {
  *os << e.name << " " << dtype_name(e.dtype) << " weights " << dtype_name(e.weight_dtype);
}

// ---- tolerances ----------------------------------------------------------------------------------------------

enum class Family {
  kExact,        // memory ops, gathers: bit-exact
  kElementwise,  // one rounding or a few per element (activations, rope, optimizer, scatter-add)
  kReduction,    // dot products / sums over up to a few hundred terms (GEMM, norms, attention, conv, CE)
  kScan,         // the SSD scan: exponentials of cumulative sums, chunked reductions over T and N
};
const char* family_name(Family f) {
  switch (f) {
    case Family::kExact:
      return "exact";
    case Family::kElementwise:
      return "elementwise";
    case Family::kReduction:
      return "reduction";
    case Family::kScan:
      return "scan";
  }
  return "?";
}

struct Tolerances {
  DType dtype;
  double elementwise, reduction, scan;  // exact is always 0
};
// F32 (the CPU backend): the worst errors observed over this grid (printed by the suite) are 1.9e-7
// elementwise (silu_mul_backward), 1.1e-6 for reductions (attention_backward dk at T=200) and 2.9e-7 for
// the scan (ssd_backward dA); the bounds leave a 20-100x margin. The bf16 column's products checked
// against references on bf16-rounded inputs (see the top) use this row too: worst 3.2e-7
// (linear_backward dW, rows=300 in=256), so the rounding the kernels do is the documented one.
// BF16 (8-bit mantissa, ε = 2^-8 ≈ 4e-3): about 2ε per element, a few ε for reductions and the scan — the
// entry for a backend that stores bf16 and accumulates in fp32. Used by the cpu-bf16 column against the
// unrounded references (bf16 weights, fp32 activations), and for the LM head's dh/dW: worst
// 5.0e-3 (linear_backward dx, rows=3 in=5), 2.9e-3 logits, 1.1e-3 target_logprob, 9.5e-4 CE dh, 5.9e-4 CE dW
// — a 6x margin or more on the reduction bound (3e-2).
constexpr Tolerances kTolerances[] = {
    {DType::F32, 5e-6, 2e-5, 3e-5},
    {DType::BF16, 1e-2, 3e-2, 5e-2},
};

double tolerance(DType t, Family f) {
  if (f == Family::kExact) return 0;
  for (const auto& e : kTolerances)
    if (e.dtype == t) return f == Family::kElementwise ? e.elementwise : f == Family::kReduction ? e.reduction : e.scan;
  ADD_FAILURE() << "no tolerance entry for dtype " << dtype_name(t);
  return 0;
}

// ---- host <-> backend dtype ----------------------------------------------------------------------------------

uint16_t to_bf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
float from_bf16(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::vector<char> encode(const std::vector<double>& v, DType t) {
  std::vector<char> out(v.size() * dtype_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    switch (t) {
      case DType::F32:
        reinterpret_cast<float*>(out.data())[i] = float(v[i]);
        break;
      case DType::F64:
        reinterpret_cast<double*>(out.data())[i] = v[i];
        break;
      case DType::BF16:
        reinterpret_cast<uint16_t*>(out.data())[i] = to_bf16(float(v[i]));
        break;
      case DType::I32:
        reinterpret_cast<int32_t*>(out.data())[i] = int32_t(v[i]);
        break;
    }
  }
  return out;
}
std::vector<double> decode(const char* p, size_t n, DType t) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) {
    switch (t) {
      case DType::F32:
        v[i] = reinterpret_cast<const float*>(p)[i];
        break;
      case DType::F64:
        v[i] = reinterpret_cast<const double*>(p)[i];
        break;
      case DType::BF16:
        v[i] = from_bf16(reinterpret_cast<const uint16_t*>(p)[i]);
        break;
      case DType::I32:
        v[i] = reinterpret_cast<const int32_t*>(p)[i];
        break;
    }
  }
  return v;
}

// A host matrix in double; empty = an absent operand.
struct Mat {
  int64_t rows = 0, cols = 0;
  std::vector<double> v;
  Mat() = default;
  Mat(int64_t r, int64_t c, double fill = 0) : rows(r), cols(c), v(size_t(r * c), fill) {}
  double* p() { return v.empty() ? nullptr : v.data(); }
  const double* p() const { return v.empty() ? nullptr : v.data(); }
  bool empty() const { return v.empty(); }
};

template <class... A>
std::string str(const A&... a) {
  std::ostringstream s;
  ((s << a), ...);
  return s.str();
}

// ---- worst errors, printed at the end --------------------------------------------------------------------------

struct Worst {
  Family family;
  double tol = 0, err = 0;
  std::string where;
  int checks = 0;
  std::string note;  // instead of numbers: why the column does not check this op (e.g. fp32 in bf16 mode)
};
std::map<std::string, Worst>& worst_table() {
  static std::map<std::string, Worst> t;
  return t;
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- the fixture -----------------------------------------------------------------------------------------------

class Conformance : public ::testing::TestWithParam<BackendEntry> {
 protected:
  void SetUp() override {
    if (GetParam().unavailable)
      if (const std::string why = GetParam().unavailable(); !why.empty()) GTEST_SKIP() << why;
  }
  Backend& be = backend_of(GetParam());
  const DType dt = GetParam().dtype;
  const DType wdt = GetParam().weight_dtype;  // == dt except in a mixed-precision column
  const bool mixed = wdt != dt;
  Rng rng{0x5eed};
  std::string shape;  // the case being run, for failure messages

  // One backend buffer [rows, width] whose column ranges are operands (a fused projection, qkv, …); with
  // pad > 0 there are pad NaN columns before, between and after the parts. Float buffers start as NaN.
  struct Fused {
    DeviceBuffer buf;
    int64_t rows = 0, width = 0;
    std::vector<int64_t> off, w;
    Tensor whole() const { return buf.mat(rows, width); }
    Tensor part(size_t i) const { return whole().col_slice(off[i], w[i]); }
  };
  std::deque<Fused> store_;

  Fused& fused(int64_t rows, std::vector<int64_t> widths, int64_t pad = 1, bool i32 = false) {
    return fused_as(i32 ? DType::I32 : dt, rows, std::move(widths), pad);
  }
  Fused& fused_as(DType t, int64_t rows, std::vector<int64_t> widths, int64_t pad = 1) {
    Fused& f = store_.emplace_back();
    f.rows = rows, f.w = widths;
    int64_t c = pad;
    for (int64_t w : widths) f.off.push_back(c), c += w + pad;
    f.width = std::max<int64_t>(c, 1);
    f.buf.bind(be, t);
    f.buf.resize(std::max<int64_t>(1, rows * f.width));
    if (f.buf.dtype() != DType::I32) be.fill(f.buf.flat(), kNaN);
    return f;
  }
  // A contiguous operand holding m (absent when m is empty).
  Tensor dense(const Mat& m) { return dense_as(m, dt); }
  // The same in dtype t (a bf16 weight operand: the upload rounds to nearest even).
  Tensor dense_as(const Mat& m, DType t) {
    if (m.empty()) return Tensor{};
    Tensor tt = fused_as(t, m.rows, {m.cols}, 0).part(0);
    put(tt, m);
    return tt;
  }
  // A contiguous output of [rows, cols], NaN.
  Tensor out(int64_t rows, int64_t cols) { return fused(rows, {cols}, 0).part(0); }
  // m at column 1 of a buffer two columns wider (a strided operand).
  Tensor strided(const Mat& m) {
    Tensor t = fused(m.rows, {m.cols}, 1).part(0);
    put(t, m);
    return t;
  }
  Tensor ids(const std::vector<int32_t>& v) {
    Fused& f = fused(1, {int64_t(v.size())}, 0, true);
    be.upload(v.data(), f.part(0));
    return f.part(0);
  }

  void put(const Tensor& t, const Mat& m) {
    ASSERT_EQ(t.rows, m.rows);
    ASSERT_EQ(t.cols, m.cols);
    const auto bytes = encode(m.v, t.dtype);
    be.upload(bytes.data(), t);
  }
  Mat get(const Tensor& t) {
    be.synchronize();
    std::vector<char> bytes(size_t(t.numel()) * dtype_size(t.dtype));
    be.download(t, bytes.data());
    Mat m(t.rows, t.cols);
    m.v = decode(bytes.data(), size_t(t.numel()), t.dtype);
    return m;
  }

  // Random host matrices, rounded to the backend's dtype so that both sides see the same inputs.
  Mat round(Mat m) { return round_to(std::move(m), dt); }
  static Mat round_to(Mat m, DType t) {
    m.v = decode(encode(m.v, t).data(), m.v.size(), t);
    return m;
  }
  Mat uniform(int64_t rows, int64_t cols, double lo, double hi) {
    Mat m(rows, cols);
    for (auto& x : m.v) x = rng.uniform(lo, hi);
    return round(std::move(m));
  }
  Mat normal(int64_t rows, int64_t cols, double scale = 1.0) { return normal_as(dt, rows, cols, scale); }
  Mat normal_as(DType t, int64_t rows, int64_t cols, double scale = 1.0) {
    Mat m(rows, cols);
    for (auto& x : m.v) x = scale * rng.normal();
    return round_to(std::move(m), t);
  }
  // The activation operand of a bf16 product as the CPU backend feeds it: rounded to bf16, on the way into
  // oneDNN's matmul and on the gemv path (x·Wᵀ with at most cpu::kGemvMaxRows rows) alike, so a row's
  // result does not depend on the batch it is in. Identity in a column without low-precision weights.
  Mat product_input(const Mat& m, bool /*gemv_path*/) const { return mixed ? round_to(m, wdt) : m; }
  bool gemv_path(int64_t rows) const { return mixed && rows <= cpu::kGemvMaxRows; }

  // A column that runs these ops in fp32 says so in the table (and the test is skipped: the f32 column
  // runs the same kernels on the same operands). Returns whether to skip.
  bool fp32_in_mixed_mode(std::initializer_list<const char*> ops) {
    if (!mixed) return false;
    for (const char* op : ops) {
      Worst& w = worst_table()[str(column(), " ", op)];
      w.note = str("fp32 in ", dtype_name(wdt), " mode (same kernel as the ", dtype_name(dt), " column)");
    }
    return true;
  }
  std::string column() const {
    return mixed ? str(GetParam().name, " ", dtype_name(dt), "+", dtype_name(wdt), "w")
                 : str(GetParam().name, " ", dtype_name(dt));
  }

  // The check: err = max|got − ref| / max(1, max|ref|) ≤ tol(dtype, family). NaN or a size mismatch fails.
  void check(const std::string& op, const std::string& output, Family f, const Mat& got, const Mat& ref) {
    check_tol(op, output, f, got, ref, dt);
  }
  // tol_dtype: the kTolerances row (the bf16 column's checks against unrounded references use BF16's).
  void check_tol(const std::string& op, const std::string& output, Family f, const Mat& got, const Mat& ref,
                 DType tol_dtype) {
    double diff = 0, scale = 1;
    bool ok = got.v.size() == ref.v.size();
    for (size_t i = 0; ok && i < got.v.size(); ++i) {
      const double d = std::abs(got.v[i] - ref.v[i]);
      diff = std::isnan(d) ? INFINITY : std::max(diff, d);
      if (std::isfinite(ref.v[i])) scale = std::max(scale, std::abs(ref.v[i]));
    }
    const double err = ok ? diff / scale : INFINITY, tol = tolerance(tol_dtype, f);
    Worst& w = worst_table()[str(column(), " ", op, " : ", output)];
    w.family = f, w.tol = tol, ++w.checks;
    if (err >= w.err) w.err = err, w.where = shape;
    EXPECT_LE(err, tol) << op << " output " << output << ", case " << shape << ", dtype " << dtype_name(dt)
                        << ", backend " << GetParam().name << ": error " << err << " (max |diff| " << diff << ", scale "
                        << scale << ", " << got.v.size() << " vs " << ref.v.size() << " elements)";
  }
  void check(const std::string& op, const std::string& output, Family f, const Tensor& got, const Mat& ref) {
    check(op, output, f, get(got), ref);
  }
  void check_tol(const std::string& op, const std::string& output, Family f, const Tensor& got, const Mat& ref,
                 DType tol_dtype) {
    check_tol(op, output, f, get(got), ref, tol_dtype);
  }
  // Every column of f outside its parts is still NaN (nothing wrote into the gaps of a fused buffer).
  void check_padding(const std::string& op, const Fused& f) {
    const Mat all = get(f.whole());
    int64_t touched = 0;
    for (int64_t r = 0; r < f.rows; ++r)
      for (int64_t c = 0; c < f.width; ++c) {
        bool inside = false;
        for (size_t i = 0; i < f.off.size(); ++i) inside |= c >= f.off[i] && c < f.off[i] + f.w[i];
        if (!inside && !std::isnan(all.v[size_t(r * f.width + c)])) ++touched;
      }
    EXPECT_EQ(touched, 0) << op << ": wrote " << touched << " padding elements, case " << shape << ", dtype "
                          << dtype_name(dt);
  }

 public:
  static void TearDownTestSuite() {
    std::printf("\n%-72s %-12s %9s %10s %6s  %s\n", "backend dtype op : output", "family", "tol", "worst", "checks",
                "worst case");
    for (const auto& [k, w] : worst_table())
      if (!w.note.empty())
        std::printf("%-72s %s\n", k.c_str(), w.note.c_str());
      else
        std::printf("%-72s %-12s %9.1e %10.2e %6d  %s\n", k.c_str(), family_name(w.family), w.tol, w.err, w.checks,
                    w.where.c_str());
    std::fflush(stdout);
  }
};

// Rows [r0, r0+n) of m.
Mat rows_of(const Mat& m, int64_t r0, int64_t n) {
  Mat o(n, m.cols);
  std::copy_n(m.v.begin() + r0 * m.cols, n * m.cols, o.v.begin());
  return o;
}

// ================================================================================================================
// memory
// ================================================================================================================

// The memory ops run on buffers of the column's weight dtype (bf16 in the bf16 column: the ParamStore's
// bf16 copies are such buffers); the same as dtype elsewhere.
TEST_P(Conformance, UploadDownloadStrided) {
  for (auto [rows, cols, pad] : std::vector<std::array<int64_t, 3>>{{1, 1, 0}, {1, 7, 3}, {5, 3, 2}, {33, 17, 5}}) {
    shape = str("rows=", rows, " cols=", cols, " pad=", pad, mixed ? str(" ", dtype_name(wdt)) : "");
    Fused& f = fused_as(wdt, rows, {cols}, pad);
    const Mat m = normal_as(wdt, rows, cols);
    put(f.part(0), m);
    check("upload/download", "round trip", Family::kExact, f.part(0), m);
    if (pad) check_padding("upload", f);
    // Row slices of a strided view.
    if (rows > 2)
      check("upload/download", "row_slice", Family::kExact, f.part(0).row_slice(1, rows - 2), rows_of(m, 1, rows - 2));
  }
  // I32 operands (ids, targets, positions).
  const std::vector<int32_t> v = {3, -1, 0, 2147483647, -2147483647};
  Tensor t = ids(v);
  std::vector<int32_t> back(v.size());
  be.download(t, back.data());
  EXPECT_EQ(back, v);
}

TEST_P(Conformance, CopyStrided) {
  for (auto [rows, cols] : std::vector<std::array<int64_t, 2>>{{1, 1}, {4, 9}, {17, 5}}) {
    shape = str("rows=", rows, " cols=", cols, mixed ? str(" ", dtype_name(wdt)) : "");
    const Mat m = normal_as(wdt, rows, cols);
    Fused& src = fused_as(wdt, rows, {cols, 2}, 2);  // src is part 0 of a buffer of stride cols+6
    put(src.part(0), m);
    Fused& dst = fused_as(wdt, rows, {3, cols}, 1);  // dst is part 1 of a buffer of stride cols+6 at another offset
    be.copy(src.part(0), dst.part(1));
    check("copy", "strided → strided", Family::kExact, dst.part(1), m);
    // Only part 1 may have been written: part 0 of dst is still NaN, like the gaps.
    dst.off.resize(2), dst.w[0] = 0;
    check_padding("copy", dst);
    // Contiguous → strided and back.
    Tensor c = fused_as(wdt, rows, {cols}, 0).part(0);
    be.copy(src.part(0), c);
    check("copy", "strided → contiguous", Family::kExact, c, m);
  }
}

// The converting copy of the bf16 mode's weight refresh: f32 → bf16 rounds to nearest, ties to even;
// bf16 → f32 is exact. Strided on both sides, both directions; NaN stays NaN.
TEST_P(Conformance, CopyConvert) {
  if (!mixed) GTEST_SKIP() << "f32 <-> " << dtype_name(wdt) << ": only a column with low-precision weights";
  for (auto [rows, cols] : std::vector<std::array<int64_t, 2>>{{1, 1}, {4, 9}, {17, 33}}) {
    shape = str("rows=", rows, " cols=", cols);
    Mat m = normal(rows, cols);
    // Ties and near-ties: 1 + 2^-8 → 1 (even), 1 + 3·2^-8 → 1 + 2^-6 (even), just above a tie → up.
    const double special[] = {1.0 + 1.0 / 256, -(1.0 + 1.0 / 256), 1.0 + 3.0 / 256, 1.0 + 1.0 / 256 + 1.0 / (1 << 20),
                              3.0e4, 1e-30, -0.0};
    for (size_t i = 0; i < std::size(special) && i < m.v.size(); ++i) m.v[i] = double(float(special[i]));
    Fused& src = fused_as(dt, rows, {cols, 2}, 2);
    put(src.part(0), m);
    Fused& dst = fused_as(wdt, rows, {3, cols}, 1);
    be.copy(src.part(0), dst.part(1));
    const Mat m16 = round_to(m, wdt);
    check("copy", str(dtype_name(dt), " → ", dtype_name(wdt), " (strided)"), Family::kExact, dst.part(1), m16);
    dst.off.erase(dst.off.begin()), dst.w.erase(dst.w.begin());
    check_padding("copy", dst);
    Fused& back = fused_as(dt, rows, {cols}, 3);
    be.copy(dst.part(0), back.part(0));
    check("copy", str(dtype_name(wdt), " → ", dtype_name(dt), " (strided, exact)"), Family::kExact, back.part(0), m16);
    check_padding("copy", back);
  }
  shape = "NaN";
  Tensor n32 = dense(Mat(1, 3, kNaN)), n16 = fused_as(wdt, 1, {3}, 0).part(0);
  be.fill(n16, 0.0);
  be.copy(n32, n16);
  const Mat got = get(n16);
  for (double x : got.v) EXPECT_TRUE(std::isnan(x)) << "copy f32 → " << dtype_name(wdt) << ": NaN became " << x;
}

TEST_P(Conformance, Fill) {
  // 1 + 2^-8 lies halfway between two bf16 values (ties to even: 1); 3e4 is not a bf16 value (29952).
  for (double value : {0.0, -1.5, 3.0e4, 1.0 + 1.0 / 256}) {
    shape = str("[7, 5] slice of stride 8, value ", value, mixed ? str(" ", dtype_name(wdt)) : "");
    Fused& f = fused_as(wdt, 7, {5}, 1);
    be.fill(f.part(0), value);
    check("fill", "strided", Family::kExact, f.part(0), round_to(Mat(7, 5, double(float(value))), wdt));
    check_padding("fill", f);
  }
  shape = "i32 [1, 6]";
  Tensor t = ids({1, 2, 3, 4, 5, 6});
  be.fill(t.col_slice(1, 4), 7);
  std::vector<int32_t> back(6);
  be.download(t, back.data());
  EXPECT_EQ(back, (std::vector<int32_t>{1, 7, 7, 7, 7, 6}));
}

TEST_P(Conformance, DeviceBufferForkAndGrow) {
  shape = str("buffer of 37 ", dtype_name(wdt));
  const Mat m = normal_as(wdt, 1, 37);
  DeviceBuffer a(be, wdt, 37);
  put(a.flat(), m);
  DeviceBuffer b = a;  // fork: an independent copy of the contents
  ASSERT_NE(b.raw(), a.raw());
  be.fill(a.flat(), 0.0);
  check("DeviceBuffer", "copy constructor", Family::kExact, b.flat(), m);
  DeviceBuffer c(be, wdt, 5);
  c = b;  // copy assignment into a smaller buffer
  be.fill(b.flat(), 1.0);
  check("DeviceBuffer", "copy assignment", Family::kExact, c.flat(), m);
  DeviceBuffer moved = std::move(c);
  check("DeviceBuffer", "move", Family::kExact, moved.flat(), m);

  // grow_preserving within capacity and beyond it keeps the first size() elements.
  DeviceBuffer g(be, wdt, 37);
  put(g.flat(), m);
  g.grow_preserving(20);  // shrink within capacity
  EXPECT_EQ(g.size(), 20);
  g.grow_preserving(37);
  check("DeviceBuffer", "grow_preserving within capacity", Family::kExact, g.flat(), m);
  g.grow_preserving(1000);
  EXPECT_EQ(g.size(), 1000);
  EXPECT_GE(g.capacity(), 1000);
  check("DeviceBuffer", "grow_preserving beyond capacity", Family::kExact, g.mat(1, 37), m);
  g.zero();
  check("DeviceBuffer", "zero", Family::kExact, g.flat(), Mat(1, 1000, 0.0));
}

TEST_P(Conformance, ArenaTakeReset) {
  Arena arena(be);
  std::vector<const void*> first_ptrs;
  for (int step = 0; step < 4; ++step) {
    // Steps 1-3 take more than step 0 (more blocks, merged by reset); from step 2 on one block serves a step.
    const std::vector<std::array<int64_t, 2>> sizes =
        step == 0 ? std::vector<std::array<int64_t, 2>>{{3, 5}, {1, 1}, {7, 9}}
                  : std::vector<std::array<int64_t, 2>>{{3, 5}, {1, 1}, {7, 9}, {40, 33}, {2, 3}};
    shape = str("arena step ", step);
    std::vector<Tensor> ts;
    std::vector<Mat> ms;
    for (auto [r, c] : sizes) {
      ts.push_back(arena.take(r, c, wdt));
      EXPECT_EQ(reinterpret_cast<uintptr_t>(ts.back().data) % 64, 0u) << shape;
      EXPECT_EQ(ts.back().dtype, wdt);
      EXPECT_EQ(ts.back().device, be.device());
      ms.push_back(normal_as(wdt, r, c));
      put(ts.back(), ms.back());
    }
    Tensor i32 = arena.take(1, 4, DType::I32);  // other dtypes share the arena
    const std::vector<int32_t> iv = {1, 2, 3, 4};
    be.upload(iv.data(), i32);
    // Every tensor kept its own contents: nothing overlaps.
    for (size_t i = 0; i < ts.size(); ++i) check("Arena", str("take #", i), Family::kExact, ts[i], ms[i]);
    std::vector<int32_t> back(4);
    be.download(i32, back.data());
    EXPECT_EQ(back, iv);
    if (step == 3) {
      EXPECT_EQ(ts[0].data, first_ptrs[2]) << "after the merge, a repeated step reuses its block";
    }
    first_ptrs.push_back(ts[0].data);
    arena.reset();
  }
}

// ================================================================================================================
// dense
// ================================================================================================================

TEST_P(Conformance, Linear) {
  // rows 1, 3 (≤ 8): the bf16 forward's gemv path; 17, 64, 300: oneDNN's bf16 matmul. in = 1, 5, 33 leave a
  // tail after the gemv's 16-wide blocks.
  for (auto [rows, in, outc] :
       std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {3, 5, 7}, {17, 33, 9}, {64, 48, 96}, {300, 256, 130}}) {
    const Mat x = normal(rows, in), W = normal(outc, in, 1 / std::sqrt(double(in))), dy = normal(rows, outc);
    // In the bf16 column W is stored in bf16 (rounded on upload) and Wq is what the products read.
    const Mat Wq = round_to(W, wdt);
    shape = str("rows=", rows, " in=", in, " out=", outc, gemv_path(rows) ? " (gemv)" : "");
    Tensor y = out(rows, outc);
    const Tensor tW = dense_as(W, wdt);
    be.linear_forward(dense(x), tW, y);
    Mat ref(rows, outc);
    const Mat xq = product_input(x, gemv_path(rows));
    cpu::linear_forward<double>(xq.p(), Wq.p(), ref.p(), rows, in, outc);
    check("linear_forward", "y", Family::kReduction, y, ref);
    if (mixed) {
      Mat ref0(rows, outc);
      cpu::linear_forward<double>(x.p(), W.p(), ref0.p(), rows, in, outc);
      check_tol("linear_forward", "y (vs unrounded)", Family::kReduction, y, ref0, wdt);
    }

    for (int mode = 0; mode < 3; ++mode) {  // dx written, dx accumulated, dx absent
      const bool acc = mode == 1;
      shape = str("rows=", rows, " in=", in, " out=", outc,
                  mode == 0 ? " dx written"
                  : acc     ? " dx accumulated"
                            : " no dx");
      const Mat dW0 = normal(outc, in), dx0 = acc ? normal(rows, in) : Mat(rows, in, kNaN);
      Tensor dW = dense(dW0), dx = mode == 2 ? Tensor{} : dense(dx0);
      be.linear_backward(dense(dy), dense(x), tW, dx, dW, acc);
      // The backward's products always go through the matmul: dy and x rounded (dW stays an fp32 accumulator).
      const Mat dyq = product_input(dy, false), xb = product_input(x, false);
      Mat dWr = dW0, dxr = acc ? dx0 : Mat(rows, in);
      cpu::linear_backward<double>(dyq.p(), xb.p(), Wq.p(), mode == 2 ? nullptr : dxr.p(), dWr.p(), rows, in, outc,
                                   acc);
      if (mode != 2) check("linear_backward", acc ? "dx (accumulated)" : "dx", Family::kReduction, dx, dxr);
      check("linear_backward", "dW (accumulated)", Family::kReduction, dW, dWr);
      if (mixed) {
        Mat dWr0 = dW0, dxr0 = acc ? dx0 : Mat(rows, in);
        cpu::linear_backward<double>(dy.p(), x.p(), W.p(), mode == 2 ? nullptr : dxr0.p(), dWr0.p(), rows, in, outc,
                                     acc);
        if (mode != 2)
          check_tol("linear_backward", acc ? "dx (accumulated, vs unrounded)" : "dx (vs unrounded)",
                    Family::kReduction, dx, dxr0, wdt);
        check_tol("linear_backward", "dW (accumulated, vs unrounded)", Family::kReduction, dW, dWr0, wdt);
      }
    }
  }
}

// ================================================================================================================
// normalisation, position
// ================================================================================================================

TEST_P(Conformance, RmsNorm) {
  if (fp32_in_mixed_mode({"rmsnorm_forward", "rmsnorm_backward"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  for (auto [rows, dim] : std::vector<std::array<int64_t, 2>>{{1, 1}, {5, 7}, {33, 64}, {3, 257}, {300, 512}}) {
    shape = str("rows=", rows, " dim=", dim);
    const double eps = 1e-5;
    const Mat x = normal(rows, dim), gain = uniform(1, dim, 0.5, 1.5), dy = normal(rows, dim);
    Tensor y = out(rows, dim), rstd = out(1, rows), y2 = out(rows, dim);
    be.rmsnorm_forward(dense(x), dense(gain), y, rstd, eps);
    be.rmsnorm_forward(dense(x), dense(gain), y2, Tensor{}, eps);  // rstd absent (inference)
    Mat yr(rows, dim), rr(1, rows);
    cpu::rmsnorm_forward<double>(x.p(), gain.p(), yr.p(), rr.p(), rows, dim, eps);
    check("rmsnorm_forward", "y", Family::kReduction, y, yr);
    check("rmsnorm_forward", "rstd", Family::kReduction, rstd, rr);
    check("rmsnorm_forward", "y (no rstd)", Family::kReduction, y2, yr);

    const Mat rstd_in = get(rstd), dg0 = normal(1, dim);  // the backend's saved rstd feeds both sides
    Tensor dx = out(rows, dim), dgain = dense(dg0);
    be.rmsnorm_backward(dense(dy), dense(x), dense(gain), rstd, dx, dgain);
    Mat dxr(rows, dim), dgr = dg0;
    cpu::rmsnorm_backward<double>(dy.p(), x.p(), gain.p(), rstd_in.p(), dxr.p(), dgr.p(), rows, dim);
    check("rmsnorm_backward", "dx", Family::kReduction, dx, dxr);
    check("rmsnorm_backward", "dgain (accumulated)", Family::kReduction, dgain, dgr);
  }
}

TEST_P(Conformance, Rope) {
  if (fp32_in_mixed_mode({"rope_apply"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  for (auto [rows, heads, D, extra] :
       std::vector<std::array<int64_t, 4>>{{1, 1, 2, 0}, {7, 4, 8, 3}, {40, 2, 16, 8}, {5, 3, 6, 1}, {600, 4, 16, 2}}) {
    RopeTable table(be, D, 10000.0);
    table.ensure(64);
    const RopeCoeffs dc = table.coeffs();
    // The reference reads the same float table, downloaded from the backend.
    std::vector<float> hcos(size_t(dc.positions * D / 2)), hsin(hcos.size());
    be.download(view(dc.cos, dc.positions, D / 2, -1, be.device()), hcos.data());
    be.download(view(dc.sin, dc.positions, D / 2, -1, be.device()), hsin.data());
    const RopeCoeffs hc{hcos.data(), hsin.data(), D, dc.positions};
    std::vector<int32_t> pos(static_cast<size_t>(rows));
    for (auto& p : pos) p = int32_t(rng.below(64));
    pos[0] = 0, pos.back() = 63;
    Tensor tpos = ids(pos);
    for (bool inverse : {false, true}) {
      shape = str("rows=", rows, " heads=", heads, " D=", D, " cols=", heads * D + extra, inverse ? " inverse" : "");
      // x is the first of two column slices of a fused buffer (q of qkv), wider than heads·D.
      const Mat x = normal(rows, heads * D + extra);
      Fused& f = fused(rows, {heads * D + extra, 5}, 1);
      put(f.part(0), x);
      be.rope_apply(f.part(0), heads, tpos, dc, inverse);
      Mat ref = x;
      cpu::rope_apply<double>(ref.p(), rows, heads, ref.cols, pos.data(), hc, inverse);
      check("rope_apply", inverse ? "x (inverse)" : "x", Family::kElementwise, f.part(0), ref);
      f.off.resize(1), f.w.resize(1);  // part 1 was never uploaded: still NaN
      check_padding("rope_apply", f);
    }
  }
}

// ================================================================================================================
// attention
// ================================================================================================================

struct AttnCase {
  int64_t B, Tq, Tk, H, Hkv, P;
};

TEST_P(Conformance, Attention) {
  if (fp32_in_mixed_mode({"attention_forward", "attention_backward"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  for (const AttnCase c : std::vector<AttnCase>{{1, 1, 1, 1, 1, 4},
                                                {2, 17, 17, 4, 1, 8},
                                                {1, 15, 40, 4, 2, 8},
                                                {3, 40, 40, 2, 2, 16},
                                                {1, 5, 5, 4, 4, 3},
                                                {2, 33, 33, 4, 2, 64},
                                                {1, 64, 300, 8, 2, 32},
                                                {2, 200, 200, 4, 1, 64}}) {
    shape = str("B=", c.B, " Tq=", c.Tq, " Tk=", c.Tk, " H=", c.H, " Hkv=", c.Hkv, " P=", c.P);
    const int64_t wq = c.H * c.P, wkv = c.Hkv * c.P, rq = c.B * c.Tq, rk = c.B * c.Tk;
    const Mat q = normal(rq, wq), k = normal(rk, wkv), v = normal(rk, wkv), dout = normal(rq, wq);
    // Self-attention: q, k, v are slices of one qkv buffer (like the model); with a cache (Tq < Tk) q is a
    // slice of its own buffer and k, v of a kv buffer.
    const bool self = c.Tq == c.Tk;
    Fused& qkv = self ? fused(rq, {wq, wkv, wkv}) : fused(rq, {wq});
    Fused& kv = self ? qkv : fused(rk, {3, wkv, wkv});
    const Tensor tq = qkv.part(0), tk = kv.part(1), tv = kv.part(2);
    put(tq, q), put(tk, k), put(tv, v);
    Fused& fo = fused(rq, {wq}, 2);
    Tensor lse = out(c.B * c.H, c.Tq);
    AttentionShape s{c.B, c.Tq, c.Tk, c.H, c.Hkv, c.P};
    be.attention_forward(s, tq, tk, tv, fo.part(0), lse);
    AttentionShape sr = s;
    sr.q_stride = sr.out_stride = wq, sr.kv_stride = wkv;
    Mat outr(rq, wq), lser(c.B * c.H, c.Tq);
    cpu::attention_forward<double>(sr, q.p(), k.p(), v.p(), outr.p(), lser.p());
    check("attention_forward", "out", Family::kReduction, fo.part(0), outr);
    check("attention_forward", "lse", Family::kReduction, lse, lser);
    check_padding("attention_forward", fo);

    // Backward: dq, dk, dv are slices of gradient buffers laid out like q, k, v; out, lse are the backend's.
    const Mat outb = get(fo.part(0)), lseb = get(lse);
    Fused& fdo = fused(rq, {wq}, 2);  // dout has out's row stride (the backend requires it)
    put(fdo.part(0), dout);
    Fused& dqkv = self ? fused(rq, {wq, wkv, wkv}) : fused(rq, {wq});
    Fused& dkv = self ? dqkv : fused(rk, {3, wkv, wkv});
    be.attention_backward(s, tq, tk, tv, fo.part(0), lse, fdo.part(0), dqkv.part(0), dkv.part(1), dkv.part(2));
    Mat dqr(rq, wq), dkr(rk, wkv), dvr(rk, wkv);
    cpu::attention_backward<double>(sr, q.p(), k.p(), v.p(), outb.p(), lseb.p(), dout.p(), dqr.p(), dkr.p(), dvr.p());
    check("attention_backward", "dq", Family::kReduction, dqkv.part(0), dqr);
    check("attention_backward", "dk", Family::kReduction, dkv.part(1), dkr);
    check("attention_backward", "dv", Family::kReduction, dkv.part(2), dvr);
    if (!self) dkv.off.erase(dkv.off.begin()), dkv.w.erase(dkv.w.begin());  // its first part stays NaN
    check_padding("attention_backward", dkv);
  }
}

TEST_P(Conformance, AttentionDecode) {
  if (fp32_in_mixed_mode({"attention_decode"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  for (auto [H, Hkv, P, L] :
       std::vector<std::array<int64_t, 4>>{{1, 1, 4, 1}, {4, 1, 8, 17}, {4, 2, 8, 40}, {2, 2, 5, 3}, {8, 2, 64, 300}}) {
    shape = str("H=", H, " Hkv=", Hkv, " P=", P, " kv_len=", L);
    const Mat q = normal(1, H * P), k = normal(L, Hkv * P), v = normal(L, Hkv * P);
    // The KV cache as k, v column slices of one buffer; q the first slice of a qkv row.
    Fused& cache = fused(L, {Hkv * P, Hkv * P});
    put(cache.part(0), k), put(cache.part(1), v);
    Fused& row = fused(1, {H * P, Hkv * P, Hkv * P});
    put(row.part(0), q);
    Fused& fo = fused(1, {H * P}, 2);
    be.attention_decode(H, Hkv, P, row.part(0), cache.part(0), cache.part(1), fo.part(0));
    AttentionShape s{1, 1, L, H, Hkv, P, H * P, Hkv * P, H * P};
    Mat ref(1, H * P), lse(H, 1);
    cpu::attention_forward<double>(s, q.p(), k.p(), v.p(), ref.p(), lse.p());
    check("attention_decode", "out (vs attention_forward q_len 1)", Family::kReduction, fo.part(0), ref);
    check_padding("attention_decode", fo);
  }
}

// ================================================================================================================
// state-space (SSD)
// ================================================================================================================

TEST_P(Conformance, SsdDecay) {
  if (fp32_in_mixed_mode({"ssd_decay_forward", "ssd_decay_backward"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  for (int64_t H : {1, 4, 7}) {
    shape = str("H=", H);
    const Mat A_log = uniform(1, H, std::log(1.0), std::log(16.0)), dA = normal(1, H), dl0 = normal(1, H);
    Tensor A = out(1, H);
    be.ssd_decay_forward(dense(A_log), A);
    Mat Ar(1, H);
    for (int64_t h = 0; h < H; ++h) Ar.v[h] = -std::exp(A_log.v[h]);
    check("ssd_decay_forward", "A", Family::kElementwise, A, Ar);
    const Mat Ab = get(A);  // the backward reads the backend's A
    Tensor dA_log = dense(dl0);
    be.ssd_decay_backward(dense(dA), A, dA_log);
    Mat dlr = dl0;
    for (int64_t h = 0; h < H; ++h) dlr.v[h] += dA.v[h] * Ab.v[h];
    check("ssd_decay_backward", "dA_log (accumulated)", Family::kElementwise, dA_log, dlr);
  }
}

struct SsdCase {
  int64_t B, T, H, G, P, N;
  bool D, init, dfinal, realistic;
};

const std::vector<SsdCase> kSsdCases = {
    // chunk 16: T = 1, 15, 16, 17, 40 (below, at, just past and across two chunk boundaries)
    {1, 1, 2, 1, 4, 3, false, false, false, false}, {2, 15, 4, 2, 4, 8, true, true, true, false},
    {1, 16, 4, 4, 8, 4, true, false, false, true},  {2, 17, 4, 1, 5, 3, true, false, true, false},
    {3, 40, 4, 2, 8, 16, false, true, false, true}, {1, 40, 6, 3, 3, 5, true, true, true, false},
    {2, 300, 4, 1, 16, 16, true, true, true, true},  // 19 chunks, the last one ragged
};

TEST_P(Conformance, Ssd) {
  if (fp32_in_mixed_mode({"ssd_forward", "ssd_backward"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  const int64_t Q = 16;
  for (const SsdCase c : kSsdCases) {
    shape = str("B=", c.B, " T=", c.T, " H=", c.H, " G=", c.G, " P=", c.P, " N=", c.N, " chunk=", Q, c.D ? " +D" : "",
                c.init ? " +init" : "", c.dfinal ? " +dfinal" : "", c.realistic ? " strong-decay" : "");
    const int64_t rows = c.B * c.T, HP = c.H * c.P, GN = c.G * c.N, S = c.H * c.P * c.N;
    const Mat x = normal(rows, HP), Bm = normal(rows, GN, 1 / std::sqrt(double(c.N))),
              Cm = normal(rows, GN, 1 / std::sqrt(double(c.N))), dy = normal(rows, HP);
    const Mat dt = c.realistic ? uniform(rows, c.H, 1e-3, 1e-1) : uniform(rows, c.H, 0.05, 0.3);
    const Mat A = c.realistic ? uniform(1, c.H, -16.0, -1.0) : uniform(1, c.H, -2.0, -0.3);
    const Mat D = c.D ? uniform(1, c.H, 0.5, 1.5) : Mat(), init = c.init ? normal(c.B, S, 0.5) : Mat();
    const Mat dfinal = c.dfinal ? normal(c.B, S) : Mat();
    // x, B, C, dt: column slices of one projection buffer (x | B | C | dt), like the mixers.
    Fused& proj = fused(rows, {HP, GN, GN, c.H});
    put(proj.part(0), x), put(proj.part(1), Bm), put(proj.part(2), Cm), put(proj.part(3), dt);
    const Tensor tA = dense(A), tD = dense(D), tinit = dense(init);
    Fused& fy = fused(rows, {HP}, 2);
    Tensor fin = out(c.B, S);
    SsdShape s;
    s.batch = c.B, s.seq = c.T, s.heads = c.H, s.head_dim = c.P, s.groups = c.G, s.state_dim = c.N, s.chunk = Q;
    be.ssd_forward(s, proj.part(0), proj.part(3), tA, proj.part(1), proj.part(2), tD, tinit, fy.part(0), fin);
    SsdShape sr = s;
    sr.x_stride = sr.y_stride = HP, sr.bc_stride = GN, sr.dt_stride = c.H;
    Mat yr(rows, HP), finr(c.B, S);
    cpu::ssd_forward<double>(sr, x.p(), dt.p(), A.p(), Bm.p(), Cm.p(), D.p(), init.p(), yr.p(), finr.p());
    check("ssd_forward", "y", Family::kScan, fy.part(0), yr);
    check("ssd_forward", "final_state", Family::kScan, fin, finr);
    check_padding("ssd_forward", fy);
    {  // final_state absent
      Tensor y2 = out(rows, HP);
      be.ssd_forward(s, proj.part(0), proj.part(3), tA, proj.part(1), proj.part(2), tD, tinit, y2, Tensor{});
      check("ssd_forward", "y (no final_state)", Family::kScan, y2, yr);
    }

    // Backward: gradients are slices of one gradient buffer with the projection's layout; dy strided.
    Fused& fdy = fused(rows, {HP}, 3);
    put(fdy.part(0), dy);
    Fused& dproj = fused(rows, {HP, GN, GN, c.H});
    const Mat dA0 = normal(1, c.H), dD0 = c.D ? normal(1, c.H) : Mat();
    Tensor dA = dense(dA0), dD = dense(dD0), dinit = c.init ? out(c.B, S) : Tensor{};
    be.ssd_backward(s, proj.part(0), proj.part(3), tA, proj.part(1), proj.part(2), tD, tinit, fdy.part(0),
                    dense(dfinal), dproj.part(0), dproj.part(3), dA, dproj.part(1), dproj.part(2), dD, dinit);
    Mat dxr(rows, HP), dtr(rows, c.H), dBr(rows, GN), dCr(rows, GN), dAr = dA0, dDr = dD0;
    Mat dinitr = c.init ? Mat(c.B, S) : Mat();
    cpu::ssd_backward<double>(sr, x.p(), dt.p(), A.p(), Bm.p(), Cm.p(), D.p(), init.p(), dy.p(), dfinal.p(), dxr.p(),
                              dtr.p(), dAr.p(), dBr.p(), dCr.p(), dDr.p(), dinitr.p());
    check("ssd_backward", "dx", Family::kScan, dproj.part(0), dxr);
    check("ssd_backward", "ddt", Family::kScan, dproj.part(3), dtr);
    check("ssd_backward", "dB", Family::kScan, dproj.part(1), dBr);
    check("ssd_backward", "dC", Family::kScan, dproj.part(2), dCr);
    check("ssd_backward", "dA (accumulated)", Family::kScan, dA, dAr);
    if (c.D) check("ssd_backward", "dD (accumulated)", Family::kScan, dD, dDr);
    if (c.init) check("ssd_backward", "dinit_state", Family::kScan, dinit, dinitr);
    check_padding("ssd_backward", dproj);
  }
}

TEST_P(Conformance, SsdStep) {
  if (fp32_in_mixed_mode({"ssd_step"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  for (const SsdCase c : kSsdCases) {
    for (bool withD : {false, true}) {
      shape =
          str("H=", c.H, " G=", c.G, " P=", c.P, " N=", c.N, withD ? " +D" : "", c.realistic ? " strong-decay" : "");
      const int64_t HP = c.H * c.P, GN = c.G * c.N, S = c.H * c.P * c.N;
      const Mat x = normal(1, HP), Bm = normal(1, GN, 1 / std::sqrt(double(c.N))),
                Cm = normal(1, GN, 1 / std::sqrt(double(c.N))), state0 = normal(1, S, 0.5);
      const Mat dt = c.realistic ? uniform(1, c.H, 1e-3, 1e-1) : uniform(1, c.H, 0.05, 0.3);
      const Mat A = c.realistic ? uniform(1, c.H, -16.0, -1.0) : uniform(1, c.H, -2.0, -0.3);
      const Mat D = withD ? uniform(1, c.H, 0.5, 1.5) : Mat();
      Fused& proj = fused(1, {HP, GN, GN, c.H});  // one decoding row of the projection
      put(proj.part(0), x), put(proj.part(1), Bm), put(proj.part(2), Cm), put(proj.part(3), dt);
      Tensor state = dense(state0);
      Fused& fy = fused(1, {HP}, 2);
      be.ssd_step(c.H, c.P, c.G, c.N, proj.part(0), proj.part(3), dense(A), proj.part(1), proj.part(2), dense(D), state,
                  fy.part(0));
      SsdShape s;
      s.batch = 1, s.seq = 1, s.heads = c.H, s.head_dim = c.P, s.groups = c.G, s.state_dim = c.N, s.chunk = 16;
      s.x_stride = s.y_stride = HP, s.bc_stride = GN, s.dt_stride = c.H;
      Mat yr(1, HP), stater(1, S);
      cpu::ssd_forward<double>(s, x.p(), dt.p(), A.p(), Bm.p(), Cm.p(), D.p(), state0.p(), yr.p(), stater.p());
      check("ssd_step", "y (vs ssd_forward T=1 with init_state)", Family::kScan, fy.part(0), yr);
      check("ssd_step", "state (vs final_state)", Family::kScan, state, stater);
      check_padding("ssd_step", fy);
    }
  }
}

// ================================================================================================================
// convolution, activations, residual, embedding
// ================================================================================================================

TEST_P(Conformance, Conv1dSilu) {
  if (fp32_in_mixed_mode({"conv1d_silu_forward", "conv1d_silu_backward"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  for (auto [B, T, C, K] : std::vector<std::array<int64_t, 4>>{
           {1, 1, 3, 4}, {2, 5, 24, 4}, {1, 17, 7, 2}, {3, 40, 16, 3}, {2, 300, 72, 4}}) {
    for (bool with_bias : {true, false}) {
      shape = str("batch=", B, " seq=", T, " channels=", C, " width=", K, with_bias ? "" : " no bias");
      const int64_t rows = B * T;
      const Mat x = normal(rows, C), w = normal(C, K, 0.5), bias = with_bias ? normal(1, C, 0.5) : Mat(),
                dy = normal(rows, C);
      // x is the xBC slice of a projection (x | xBC | dt); y contiguous like the mixers' conv output.
      Fused& proj = fused(rows, {2, C, 3});
      put(proj.part(1), x);
      Tensor y = out(rows, C);
      be.conv1d_silu_forward(proj.part(1), dense(w), dense(bias), y, B, T);
      Mat yr(rows, C);
      cpu::conv1d_silu_forward<double>(x.p(), C, w.p(), bias.p(), yr.p(), C, B, T, C, K);
      check("conv1d_silu_forward", "y", Family::kReduction, y, yr);

      const Mat dw0 = normal(C, K), db0 = with_bias ? normal(1, C) : Mat();
      Fused& dproj = fused(rows, {2, C, 3});  // dx: the same slice of the projection's gradient
      Tensor dw = dense(dw0), db = dense(db0);
      be.conv1d_silu_backward(strided(dy), proj.part(1), dense(w), dense(bias), dproj.part(1), dw, db, B, T);
      Mat dxr(rows, C), dwr = dw0, dbr = db0;
      cpu::conv1d_silu_backward<double>(dy.p(), C, x.p(), C, w.p(), bias.p(), dxr.p(), dwr.p(), dbr.p(), B, T, C, K);
      check("conv1d_silu_backward", "dx", Family::kReduction, dproj.part(1), dxr);
      check("conv1d_silu_backward", "dw (accumulated)", Family::kReduction, dw, dwr);
      if (with_bias) check("conv1d_silu_backward", "dbias (accumulated)", Family::kReduction, db, dbr);
      dproj.off.erase(dproj.off.begin()), dproj.w.erase(dproj.w.begin());
      dproj.off.pop_back(), dproj.w.pop_back();
      check_padding("conv1d_silu_backward", dproj);
    }
  }
}

// A gradient view whose stride differs from its input's (x a slice of a projection, dx a contiguous
// buffer): a backend may refuse it (throw) but must not write it with the input's stride.
TEST_P(Conformance, Conv1dSiluDxOtherStride) {
  if (fp32_in_mixed_mode({"conv1d_silu_backward"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  const int64_t B = 2, T = 5, C = 6, K = 4, rows = B * T;
  shape = "batch=2 seq=5 channels=6 width=4, x stride 10, dx contiguous";
  const Mat x = normal(rows, C), w = normal(C, K, 0.5), bias = normal(1, C, 0.5), dy = normal(rows, C);
  Fused& proj = fused(rows, {C}, 2);
  put(proj.part(0), x);
  Fused& fdx = fused(2 * rows, {C}, 0);  // room for a stride-10 write: a wrong one is seen, not a crash
  const Tensor dx = fdx.whole().row_slice(0, rows);
  try {
    be.conv1d_silu_backward(dense(dy), proj.part(0), dense(w), dense(bias), dx, Tensor{}, Tensor{}, B, T);
  } catch (const std::exception&) {
    return;  // refused: fine
  }
  Mat dxr(rows, C);
  cpu::conv1d_silu_backward<double>(dy.p(), C, x.p(), C, w.p(), bias.p(), dxr.p(), nullptr, nullptr, B, T, C, K);
  check("conv1d_silu_backward", "dx (stride differs from x)", Family::kReduction, dx, dxr);
}

TEST_P(Conformance, SiluMul) {
  if (fp32_in_mixed_mode({"silu_mul_forward", "silu_mul_backward"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  for (auto [rows, n] : std::vector<std::array<int64_t, 2>>{{1, 1}, {7, 13}, {33, 64}, {300, 129}}) {
    shape = str("rows=", rows, " n=", n);
    const Mat gate = normal(rows, n, 2.0), up = normal(rows, n), dout = normal(rows, n);
    Fused& gu = fused(rows, {n, n});  // gate | up of one GEMM output
    put(gu.part(0), gate), put(gu.part(1), up);
    Tensor o = out(rows, n);
    be.silu_mul_forward(gu.part(0), gu.part(1), o);
    Mat oref(rows, n);
    cpu::silu_mul_forward<double>(gate.p(), n, up.p(), n, oref.p(), n, rows, n);
    check("silu_mul_forward", "out", Family::kElementwise, o, oref);

    Fused& dgu = fused(rows, {n, n});
    be.silu_mul_backward(strided(dout), gu.part(0), gu.part(1), dgu.part(0), dgu.part(1));
    Mat dg(rows, n), du(rows, n);
    cpu::silu_mul_backward<double>(dout.p(), n, gate.p(), n, up.p(), n, dg.p(), du.p(), rows, n);
    check("silu_mul_backward", "dgate", Family::kElementwise, dgu.part(0), dg);
    check("silu_mul_backward", "dup", Family::kElementwise, dgu.part(1), du);
    check_padding("silu_mul_backward", dgu);
  }
}

TEST_P(Conformance, Residual) {
  if (fp32_in_mixed_mode({"residual_forward", "residual_backward"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  for (auto [rows, dim] : std::vector<std::array<int64_t, 2>>{{1, 1}, {7, 13}, {33, 64}, {300, 129}}) {
    for (int mode = 0; mode < 4; ++mode) {  // 0: w, 1: no w, 2: w with out aliasing skip, 3: aliasing branch
      const bool with_w = mode != 1;
      shape = str("rows=", rows, " dim=", dim,
                  mode == 0   ? " w"
                  : mode == 1 ? " no w"
                  : mode == 2 ? " w, out=skip, dskip=dout"
                              : " w, out=branch");
      const Mat skip = normal(rows, dim), w = with_w ? uniform(1, dim, 0.5, 1.5) : Mat(), branch = normal(rows, dim),
                dout = normal(rows, dim);
      Tensor ts = dense(skip), tb = dense(branch), tw = dense(w);
      Tensor o = mode == 2 ? ts : mode == 3 ? tb : out(rows, dim);
      be.residual_forward(ts, tw, tb, o);
      Mat oref(rows, dim);
      cpu::residual_forward<double>(skip.p(), w.p(), branch.p(), oref.p(), rows, dim);
      check("residual_forward", mode >= 2 ? "out (aliased)" : "out", Family::kElementwise, o, oref);

      const Mat dw0 = with_w ? normal(1, dim) : Mat();
      Tensor tdo = dense(dout), tskip = dense(skip), dw = dense(dw0);
      Tensor dskip = mode == 2 ? tdo : out(rows, dim);
      be.residual_backward(tdo, tskip, tw, dskip, dw);
      Mat dsr(rows, dim), dwr = dw0;
      cpu::residual_backward<double>(dout.p(), skip.p(), w.p(), dsr.p(), dwr.p(), rows, dim);
      check("residual_backward", mode == 2 ? "dskip (aliasing dout)" : "dskip", Family::kElementwise, dskip, dsr);
      if (with_w) check("residual_backward", "dw (accumulated)", Family::kReduction, dw, dwr);
    }
  }
}

TEST_P(Conformance, Softplus) {
  if (fp32_in_mixed_mode({"softplus_forward", "softplus_backward"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  for (auto [rows, H] : std::vector<std::array<int64_t, 2>>{{1, 1}, {7, 4}, {40, 6}, {3000, 8}}) {
    for (bool with_bias : {true, false}) {
      shape = str("rows=", rows, " H=", H, with_bias ? " bias" : " no bias");
      const Mat raw = uniform(rows, H, -6.0, 6.0), bias = with_bias ? uniform(1, H, -3.0, 1.0) : Mat(),
                ddt = normal(rows, H);
      Fused& proj = fused(rows, {9, H});  // raw dt: the last slice of a projection
      put(proj.part(1), raw);
      Tensor dt = out(rows, H);
      be.softplus_forward(proj.part(1), dense(bias), dt);
      Mat dtr(rows, H);
      cpu::softplus_forward<double>(raw.p(), H, bias.p(), dtr.p(), rows, H);
      check("softplus_forward", "dt", Family::kElementwise, dt, dtr);

      const Mat db0 = with_bias ? normal(1, H) : Mat();
      Fused& dproj = fused(rows, {9, H});
      Tensor db = dense(db0);
      be.softplus_backward(dense(ddt), proj.part(1), dense(bias), dproj.part(1), db);
      Mat drr(rows, H), dbr = db0;
      cpu::softplus_backward<double>(ddt.p(), raw.p(), H, bias.p(), drr.p(), dbr.p(), rows, H);
      check("softplus_backward", "draw", Family::kElementwise, dproj.part(1), drr);
      if (with_bias) check("softplus_backward", "dbias (accumulated)", Family::kReduction, db, dbr);
      dproj.off.erase(dproj.off.begin()), dproj.w.erase(dproj.w.begin());
      check_padding("softplus_backward", dproj);
    }
  }
}

TEST_P(Conformance, Embedding) {
  for (auto [rows, vocab, dim] :
       std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {9, 5, 7}, {64, 50, 33}, {600, 100, 64}}) {
    shape = str("rows=", rows, " vocab=", vocab, " dim=", dim, " (repeated ids)");
    std::vector<int32_t> id(static_cast<size_t>(rows));
    for (auto& i : id) i = int32_t(rng.below(uint64_t(vocab)));
    id.back() = int32_t(vocab - 1);
    const Mat table = normal(vocab, dim), dout = normal(rows, dim), dt0 = normal(vocab, dim);
    Tensor tid = ids(id), o = out(rows, dim);
    // The bf16 column's table is bf16 (the bf16 mode's copy), widened exactly into the fp32 output.
    be.embedding_forward(tid, dense_as(table, wdt), o);
    Mat oref(rows, dim);
    const Mat tq = round_to(table, wdt);
    cpu::embedding_forward<double, double>(id.data(), tq.p(), oref.p(), rows, dim);
    check("embedding_forward", mixed ? str("out (", dtype_name(wdt), " table)") : "out", Family::kExact, o, oref);
    if (fp32_in_mixed_mode({"embedding_backward"})) continue;  // the gradient of the table is fp32
    Tensor dtable = dense(dt0);
    be.embedding_backward(tid, dense(dout), dtable);
    Mat dtr = dt0;
    cpu::embedding_backward<double>(id.data(), dout.p(), dtr.p(), rows, dim);
    check("embedding_backward", "dtable (accumulated)", Family::kElementwise, dtable, dtr);
  }
}

// ================================================================================================================
// LM head
// ================================================================================================================

TEST_P(Conformance, LmHeadCrossEntropy) {
  // rows 300, 600 cross the kernel's 256-row blocks; the last case has no target at all.
  // In the bf16 column: rows ≤ 8 per 256-row block take the gemv path for the logits (h in fp32), larger
  // blocks oneDNN's matmul (h rounded); 9 is the smallest matmul block, 260 = 256 (matmul) + 4 (gemv).
  for (auto [rows, dim, vocab, mode] : std::vector<std::array<int64_t, 4>>{{1, 8, 5, 0},
                                                                           {7, 33, 97, 0},
                                                                           {9, 33, 97, 0},
                                                                           {260, 16, 61, 0},
                                                                           {300, 16, 61, 0},
                                                                           {600, 32, 300, 0},
                                                                           {7, 33, 97, 1},
                                                                           {5, 8, 11, 2},
                                                                           {4, 8, 11, 3}}) {
    // mode 0: training (dh, dW, target_logprob); 1: loss only; 2: training without target_logprob;
    // 3: every target −1.
    const bool train = mode != 1, with_tlp = mode != 2;
    shape = str("rows=", rows, " dim=", dim, " vocab=", vocab,
                mode == 0   ? " train"
                : mode == 1 ? " loss only"
                : mode == 2 ? " train, no target_logprob"
                            : " no targets");
    const Mat h = normal(rows, dim), W = normal(vocab, dim, 1 / std::sqrt(double(dim))), dW0 = normal(vocab, dim);
    std::vector<int32_t> tg(static_cast<size_t>(rows));
    for (auto& t : tg) t = rng.below(4) == 0 ? -1 : int32_t(rng.below(uint64_t(vocab)));
    if (rows > 2) tg[1] = -1, tg.back() = int32_t(vocab - 1);
    if (mode == 3) std::fill(tg.begin(), tg.end(), -1);
    int64_t counted = 0;
    for (int32_t t : tg) counted += t >= 0;
    const float gs = float(1.0 / double(std::max<int64_t>(counted, 1)));
    Tensor tlp = with_tlp ? out(1, rows) : Tensor{}, dh = train ? out(rows, dim) : Tensor{};
    Tensor dW = train ? dense(dW0) : Tensor{};
    const CrossEntropyResult r = be.lm_head_cross_entropy(dense(h), dense_as(W, wdt), ids(tg), tlp, dh, dW, gs);
    // Reference inputs: W as stored; h as each 256-row block's logits product reads it (see product_input).
    const Mat Wq = round_to(W, wdt);
    Mat hq = h;
    for (int64_t r0 = 0; r0 < rows; r0 += 256) {
      const int64_t nb = std::min<int64_t>(256, rows - r0);
      const Mat blk = product_input(rows_of(h, r0, nb), gemv_path(nb));
      std::copy(blk.v.begin(), blk.v.end(), hq.v.begin() + r0 * dim);
    }
    Mat tlpr(1, rows), dhr(rows, dim), dWr = dW0;
    const CrossEntropyResult rr =
        cpu::lm_head_cross_entropy<double, double>(hq.p(), Wq.p(), tg.data(), rows, dim, vocab, tlpr.p(),
                                                   train ? dhr.p() : nullptr, train ? dWr.p() : nullptr, double(gs));
    EXPECT_EQ(r.counted, counted) << shape;
    EXPECT_EQ(r.counted, rr.counted) << shape;
    Mat loss(1, 1, r.loss_sum), lossr(1, 1, rr.loss_sum);
    check("lm_head_cross_entropy", "loss_sum", Family::kReduction, loss, lossr);
    if (with_tlp) check("lm_head_cross_entropy", "target_logprob", Family::kReduction, tlp, tlpr);
    // dh and dW: the kernel also rounds the softmax gradient to bf16 (not reproducible here): BF16 row.
    if (train) {
      check_tol("lm_head_cross_entropy", "dh", Family::kReduction, dh, dhr, wdt);
      check_tol("lm_head_cross_entropy", "dW (accumulated)", Family::kReduction, dW, dWr, wdt);
    }
    if (mixed) {
      Mat tlpr0(1, rows), dhr0(rows, dim), dWr0 = dW0;
      const CrossEntropyResult r0 =
          cpu::lm_head_cross_entropy<double, double>(h.p(), W.p(), tg.data(), rows, dim, vocab, tlpr0.p(),
                                                     train ? dhr0.p() : nullptr, train ? dWr0.p() : nullptr,
                                                     double(gs));
      check_tol("lm_head_cross_entropy", "loss_sum (vs unrounded)", Family::kReduction, loss,
                Mat(1, 1, r0.loss_sum), wdt);
      if (with_tlp)
        check_tol("lm_head_cross_entropy", "target_logprob (vs unrounded)", Family::kReduction, tlp, tlpr0, wdt);
      if (train) {
        check_tol("lm_head_cross_entropy", "dh (vs unrounded)", Family::kReduction, dh, dhr0, wdt);
        check_tol("lm_head_cross_entropy", "dW (accumulated, vs unrounded)", Family::kReduction, dW, dWr0, wdt);
      }
    }
  }
}

TEST_P(Conformance, LmHeadLogits) {
  // rows ≤ 8: the bf16 column's gemv path (decoding); 9 and 64: oneDNN's matmul (prefill).
  for (auto [rows, dim, vocab] : std::vector<std::array<int64_t, 3>>{
           {1, 8, 5}, {7, 33, 97}, {3, 64, 300}, {8, 33, 97}, {9, 33, 97}, {64, 64, 300}}) {
    shape = str("rows=", rows, " dim=", dim, " vocab=", vocab, gemv_path(rows) ? " (gemv)" : "");
    const Mat h = normal(rows, dim), W = normal(vocab, dim, 1 / std::sqrt(double(dim)));
    Tensor logits = out(rows, vocab);
    be.lm_head_logits(dense(h), dense_as(W, wdt), logits);
    Mat ref(rows, vocab);
    const Mat hq = product_input(h, gemv_path(rows)), Wq = round_to(W, wdt);
    cpu::lm_head_logits<double, double>(hq.p(), Wq.p(), ref.p(), rows, dim, vocab);
    check("lm_head_logits", "logits", Family::kReduction, logits, ref);
    if (mixed) {
      Mat ref0(rows, vocab);
      cpu::lm_head_logits<double, double>(h.p(), W.p(), ref0.p(), rows, dim, vocab);
      check_tol("lm_head_logits", "logits (vs unrounded)", Family::kReduction, logits, ref0, wdt);
    }
  }
}

// ================================================================================================================
// optimizer, reductions (plain double references)
// ================================================================================================================

TEST_P(Conformance, AdamW) {
  if (fp32_in_mixed_mode({"adamw_update"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  for (int64_t n : {1, 37, 40000}) {
    for (int64_t step : {1, 10}) {
      for (bool decay : {true, false}) {
        shape = str("n=", n, " step=", step, decay ? " decay" : " no decay");
        AdamWParams p;
        p.lr = 3e-3f, p.beta1 = 0.9f, p.beta2 = 0.95f, p.eps = 1e-8f, p.weight_decay = 0.1f, p.step = step;
        const Mat w = normal(1, n), g = normal(1, n, 0.1), m = step == 1 ? Mat(1, n, 0.0) : normal(1, n, 0.01);
        const Mat v = step == 1 ? Mat(1, n, 0.0) : uniform(1, n, 0.0, 1e-3);
        Tensor tw = dense(w), tm = dense(m), tv = dense(v);
        be.adamw_update(tw, dense(g), tm, tv, p, decay);
        Mat wr = w, mr = m, vr = v;
        const double b1 = p.beta1, b2 = p.beta2, bc1 = 1 - std::pow(b1, double(step)),
                     bc2 = 1 - std::pow(b2, double(step));
        for (int64_t i = 0; i < n; ++i) {
          mr.v[i] = b1 * m.v[i] + (1 - b1) * g.v[i];
          vr.v[i] = b2 * v.v[i] + (1 - b2) * g.v[i] * g.v[i];
          const double upd = (mr.v[i] / bc1) / (std::sqrt(vr.v[i] / bc2) + double(p.eps));
          wr.v[i] = w.v[i] - double(p.lr) * (upd + (decay ? double(p.weight_decay) * w.v[i] : 0.0));
        }
        check("adamw_update", "w", Family::kElementwise, tw, wr);
        check("adamw_update", "m", Family::kElementwise, tm, mr);
        check("adamw_update", "v", Family::kElementwise, tv, vr);
      }
    }
  }
}

// The multi-tensor form: ragged runs with gaps (left alone), decaying and not, over one flat buffer.
TEST_P(Conformance, AdamWSegments) {
  if (fp32_in_mixed_mode({"adamw_update_segments"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  for (int64_t step : {1, 7}) {
    const int64_t n = 50021;
    std::vector<AdamWSegment> segs;
    for (int64_t off = 3, k = 0; off < n - 10; ++k) {  // lengths 1, 17, 289, ... wrapping; a gap of k % 3 after each
      const int64_t len = std::min<int64_t>(n - 10 - off, 1 + (k * 17 * 17) % 4099);
      segs.push_back(AdamWSegment{off, len, k % 2 == 0});
      off += len + k % 3;
    }
    shape = str("n=", n, " segments=", segs.size(), " step=", step);
    AdamWParams p;
    p.lr = 3e-3f, p.beta1 = 0.9f, p.beta2 = 0.95f, p.eps = 1e-8f, p.weight_decay = 0.1f, p.step = step;
    const Mat w = normal(1, n), g = normal(1, n, 0.1), m = normal(1, n, 0.01), v = uniform(1, n, 0.0, 1e-3);
    Tensor tw = dense(w), tm = dense(m), tv = dense(v);
    be.adamw_update_segments(tw, dense(g), tm, tv, segs, p);
    Mat wr = w, mr = m, vr = v;
    const double b1 = p.beta1, b2 = p.beta2, bc1 = 1 - std::pow(b1, double(step)), bc2 = 1 - std::pow(b2, double(step));
    for (const AdamWSegment& sg : segs) {
      for (int64_t i = sg.offset; i < sg.offset + sg.length; ++i) {
        mr.v[i] = b1 * m.v[i] + (1 - b1) * g.v[i];
        vr.v[i] = b2 * v.v[i] + (1 - b2) * g.v[i] * g.v[i];
        const double upd = (mr.v[i] / bc1) / (std::sqrt(vr.v[i] / bc2) + double(p.eps));
        wr.v[i] = w.v[i] - double(p.lr) * (upd + (sg.decay ? double(p.weight_decay) * w.v[i] : 0.0));
      }
    }
    check("adamw_update_segments", "w", Family::kElementwise, tw, wr);
    check("adamw_update_segments", "m", Family::kElementwise, tm, mr);
    check("adamw_update_segments", "v", Family::kElementwise, tv, vr);
  }
}

TEST_P(Conformance, SumSquaresScaleAllFinite) {
  if (fp32_in_mixed_mode({"sum_squares", "scale", "all_finite"})) GTEST_SKIP() << "fp32 in " << dtype_name(wdt) << " mode";
  for (int64_t n : {1, 37, 70001}) {  // 70001: several of the kernel's chunks, past its parallel threshold
    shape = str("n=", n);
    const Mat x = normal(1, n);
    Tensor t = dense(x);
    double ref = 0;
    for (double e : x.v) ref += e * e;
    check("sum_squares", "sum", Family::kReduction, Mat(1, 1, be.sum_squares(t)), Mat(1, 1, ref));
    for (float s : {0.5f, -3.0f, 0.0f}) {
      Tensor u = dense(x);
      be.scale(u, s);
      Mat sr = x;
      for (auto& e : sr.v) e *= double(s);
      check("scale", "x", Family::kElementwise, u, sr);
    }
    EXPECT_TRUE(be.all_finite(t)) << "all_finite, " << shape;
    for (double bad : {kNaN, double(INFINITY), -double(INFINITY)}) {
      for (int64_t at : {int64_t(0), n / 2, n - 1}) {
        Mat y = x;
        y.v[size_t(at)] = bad;
        EXPECT_FALSE(be.all_finite(dense(y))) << "all_finite with " << bad << " at " << at << ", " << shape;
      }
    }
    Mat big = x;
    big.v[0] = std::numeric_limits<float>::max(), big.v[size_t(n - 1)] = -std::numeric_limits<float>::max();
    EXPECT_TRUE(be.all_finite(dense(round(big)))) << "all_finite with ±FLT_MAX, " << shape;
  }
}

// ================================================================================================================
// operand checks (ops/op_checks.h): the same refusals on every backend
// ================================================================================================================

// Each call gets one operand of the wrong size or layout, of the kind a kernel would read or write past:
// every backend must refuse it with an Error naming the op, and leave the output it was handed untouched.
TEST_P(Conformance, WrongOperandsRefused) {
  if (mixed) GTEST_SKIP() << "the same checks as the " << dtype_name(dt) << " column";
  const int64_t rows = 6, C = 4, K = 3, H = 2, P = 4, N = 4;
  const Mat x = normal(rows, C), w = normal(C, K), bias = normal(1, C), dy = normal(rows, C);
  int refused = 0;
  auto refuses = [&](const char* op, const Tensor& untouched, auto&& call) {
    const Mat before = get(untouched);
    try {
      call();
      ADD_FAILURE() << op << ": a wrong operand was accepted";
      return;
    } catch (const Error& e) {
      ++refused;
      EXPECT_NE(std::string(e.what()).find(op), std::string::npos) << op << ": the error does not name the op: "
                                                                    << e.what();
    }
    const Mat after = get(untouched);
    for (size_t i = 0; i < before.v.size(); ++i)
      if (!(before.v[i] == after.v[i]) && !(std::isnan(before.v[i]) && std::isnan(after.v[i]))) {
        ADD_FAILURE() << op << ": wrote its output before refusing";
        break;
      }
  };
  Tensor dx = out(rows, C), dw_small = dense(normal(C, K - 1)), db = dense(bias);
  refuses("conv1d_silu_backward", dw_small, [&] {
    be.conv1d_silu_backward(dense(dy), dense(x), dense(w), dense(bias), dx, dw_small, db, 2, 3);
  });
  Tensor y = out(rows, C);
  refuses("conv1d_silu_forward", y,
          [&] { be.conv1d_silu_forward(dense(x), dense(w), dense(normal(1, C + 1)), y, 2, 3); });
  Tensor dgate = out(rows, C), dup = out(rows, C);
  refuses("silu_mul_backward", dgate, [&] {
    be.silu_mul_backward(dense(normal(rows - 1, C)), dense(x), dense(x), dgate, dup);
  });
  Tensor dskip = out(rows, C), dgain_short = dense(normal(1, C - 1));
  refuses("residual_backward", dgain_short,
          [&] { be.residual_backward(dense(dy), dense(x), dense(bias), dskip, dgain_short); });
  Tensor ddt_raw = out(rows, H), dbias_long = dense(normal(1, H + 1));
  refuses("softplus_backward", dbias_long, [&] {
    be.softplus_backward(dense(normal(rows, H)), dense(normal(rows, H)), dense(normal(1, H)), ddt_raw, dbias_long);
  });
  Tensor rdx = out(rows, C), rdg = out(1, C);
  refuses("rmsnorm_backward", rdx, [&] { be.rmsnorm_backward(dense(dy), dense(x), dense(bias), Tensor{}, rdx, rdg); });
  Tensor state = dense(normal(1, H * P * N)), sy = out(2, H * P);
  refuses("ssd_step", state, [&] {
    be.ssd_step(H, P, 1, N, dense(normal(2, H * P)), dense(normal(2, H)), dense(normal(1, H)), dense(normal(2, N)),
                dense(normal(2, N)), Tensor{}, state, sy);
  });
  Tensor pos_x = dense(normal(rows, 2 * 3));
  refuses("rope_apply", pos_x, [&] {
    const float table[6] = {1, 1, 1, 0, 0, 0};
    const RopeCoeffs odd{table, table + 3, 3, 1};  // an odd rotated dimension
    be.rope_apply(pos_x, 2, ids(std::vector<int32_t>(size_t(rows), 0)), odd, false);
  });
  Tensor aw = dense(normal(1, 8));
  refuses("adamw_update", aw, [&] {
    AdamWParams p;
    p.step = 0;  // steps are 1-based: step 0 would divide by a zero bias correction
    be.adamw_update(aw, dense(normal(1, 8)), dense(normal(1, 8)), dense(normal(1, 8)), p, true);
  });
  Tensor sw = dense(normal(1, 8));
  refuses("adamw_update_segments", sw, [&] {
    AdamWParams p;
    p.step = 1;
    be.adamw_update_segments(sw, dense(normal(1, 8)), dense(normal(1, 8)), dense(normal(1, 8)),
                             {{0, 5, true}, {3, 4, true}}, p);  // overlapping runs
  });
  EXPECT_EQ(refused, 10);
}

INSTANTIATE_TEST_SUITE_P(Backends, Conformance, ::testing::ValuesIn(kBackends),
                         [](const ::testing::TestParamInfo<BackendEntry>& i) {
                           std::string n = std::string(i.param.name) + "_" + dtype_name(i.param.dtype);
                           if (i.param.weight_dtype != i.param.dtype) n += std::string("_w") + dtype_name(i.param.weight_dtype);
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

}  // namespace
}  // namespace txs
