// Encode throughput (MB/s) of our tokenizer on the Gutenberg corpus, one thread and all threads, printed
// side by side with the JavaScript oracle (npm @huggingface/tokenizers) on the same text.
//
//   bench_tokenizer [--tokenizer T] [--corpus DIR] [--oracle-mb MB] [--no-oracle]
//
// The oracle runs through tests/reference/tokenizer_oracle.mjs when the npm package is installed in
// /tmp/transxssm-npm-tokenizers-0.2.0 (tools/bench_tokenizer.sh installs it). It is ~50x slower than we
// are, so it encodes only the first --oracle-mb MB (default 4) of the corpus; we report ours on that
// same prefix as well as on the whole corpus. Each measurement starts with cold BPE caches.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;

static std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Measurement {
  double mb_per_s = 0;
  size_t tokens = 0;
};

// A fresh Tokenizer (so the per-thread BPE caches start cold), then one timed encode.
static Measurement measure(const std::string& tokenizer_path, const std::string& text, int threads) {
  const txs::Tokenizer tok = txs::Tokenizer::from_file(tokenizer_path);
  omp_set_num_threads(threads);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok.encode(text);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {double(text.size()) / 1e6 / s, ids.size()};
}

// The bench is built without the tests' path definitions: find the tree from this file's path.
static const std::string kSourceDir = fs::absolute(fs::path(__FILE__)).parent_path().parent_path().string();

int main(int argc, char** argv) {
  std::string shared = std::getenv("TRANSXSSM_SHARED_DIR") ? std::getenv("TRANSXSSM_SHARED_DIR")
                                                           : kSourceDir + "/../shared";
  std::string tokenizer = shared + "/data/tokenizers/neox-20b.json";
  std::string corpus = shared + "/data/corpora/gutenberg";
  double oracle_mb = 4;
  bool oracle = true;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--tokenizer" && i + 1 < argc) tokenizer = argv[++i];
    else if (a == "--corpus" && i + 1 < argc) corpus = argv[++i];
    else if (a == "--oracle-mb" && i + 1 < argc) oracle_mb = std::atof(argv[++i]);
    else if (a == "--no-oracle") oracle = false;
    else {
      std::fprintf(stderr, "usage: bench_tokenizer [--tokenizer T] [--corpus DIR] [--oracle-mb MB] [--no-oracle]\n");
      return 2;
    }
  }
  try {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(corpus))
      if (e.is_regular_file()) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    std::string text;
    for (const std::string& f : files) text += read_file(f);
    if (text.empty()) throw std::runtime_error("no text in " + corpus);
    // The oracle's share: whole books from the start, about oracle_mb MB.
    std::string prefix;
    for (const std::string& f : files) {
      if (double(prefix.size()) >= oracle_mb * 1e6) break;
      prefix += read_file(f);
    }
    const int all = std::max(1, int(std::thread::hardware_concurrency()));
    std::printf("tokenizer %s\ncorpus %s: %zu files, %.1f MB (oracle prefix %.1f MB)\n", tokenizer.c_str(),
                corpus.c_str(), files.size(), double(text.size()) / 1e6, double(prefix.size()) / 1e6);

    const Measurement ours_prefix_1 = measure(tokenizer, prefix, 1);
    const Measurement ours_prefix_n = measure(tokenizer, prefix, all);
    const Measurement ours_all_1 = measure(tokenizer, text, 1);
    const Measurement ours_all_n = measure(tokenizer, text, all);

    double js = 0;
    size_t js_tokens = 0;
    const std::string module = "/tmp/transxssm-npm-tokenizers-0.2.0/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs";
    if (oracle && fs::exists(module)) {
      const std::string tmp = (fs::temp_directory_path() / ("bench_tokenizer_" + std::to_string(getpid()))).string();
      std::ofstream(tmp, std::ios::binary) << prefix;
      const std::string cmd = "node " + kSourceDir +
                              "/tests/reference/tokenizer_oracle.mjs --module " + module + " --tokenizer " +
                              tokenizer + " --bench " + tmp;
      if (FILE* p = popen(cmd.c_str(), "r")) {
        std::string out;
        char buf[4096];
        while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
        pclose(p);
        auto j = nlohmann::json::parse(out, nullptr, false);
        if (!j.is_discarded()) js = j.value("mb_per_s", 0.0), js_tokens = j.value("tokens", size_t(0));
      }
      fs::remove(tmp);
    } else if (oracle) {
      std::printf("(oracle not installed: run tools/bench_tokenizer.sh to install it)\n");
    }

    std::printf("\n%-34s %12s %12s %10s\n", "text", "MB/s", "tokens", "vs oracle");
    auto row = [&](const char* name, const Measurement& m) {
      if (js > 0)
        std::printf("%-34s %12.2f %12zu %9.1fx\n", name, m.mb_per_s, m.tokens, m.mb_per_s / js);
      else
        std::printf("%-34s %12.2f %12zu %10s\n", name, m.mb_per_s, m.tokens, "-");
    };
    if (js > 0) std::printf("%-34s %12.2f %12zu %9.1fx\n", "oracle (JS), prefix, 1 thread", js, js_tokens, 1.0);
    row("ours, prefix, 1 thread", ours_prefix_1);
    row(("ours, prefix, " + std::to_string(all) + " threads").c_str(), ours_prefix_n);
    row("ours, whole corpus, 1 thread", ours_all_1);
    row(("ours, whole corpus, " + std::to_string(all) + " threads").c_str(), ours_all_n);
    if (js > 0 && js_tokens != ours_prefix_1.tokens) std::printf("WARNING: token counts differ from the oracle\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
