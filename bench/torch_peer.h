// Runs bench/torch_peer.py (the PyTorch peer of the training benchmarks) and reads the JSON line it prints
// last. One definition for bench_train and bench_gpu.
#pragma once
#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace txs::bench {

// `args`: the peer's command-line arguments; `python`: the interpreter (Debian's /usr/bin/python3 holds torch on
// the CPU machines; a GPU machine's python3 has CUDA torch). The peer's output (stderr included) is read whole;
// its last line starting with '{' is the result. On failure: {"error": the output's last 600 characters}.
inline nlohmann::json run_torch_peer(const std::string& args, const std::string& python = "/usr/bin/python3") {
  const std::string cmd = python + " " + TRANSXSSM_SOURCE_DIR + "/bench/torch_peer.py " + args + " 2>&1";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    while (fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  const auto nl = out.rfind("\n{");
  const auto start = nl != std::string::npos ? nl + 1 : (out.rfind('{') == 0 ? 0 : std::string::npos);
  try {
    if (start == std::string::npos) throw std::runtime_error("no JSON line");
    return nlohmann::json::parse(out.substr(start));
  } catch (const std::exception&) {
    return {{"error", out.size() > 600 ? out.substr(out.size() - 600) : out}};
  }
}

}  // namespace txs::bench
