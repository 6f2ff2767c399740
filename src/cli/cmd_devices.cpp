// `transxssm devices`: which backends this build has and whether each can run here. With --require DEVICE it
// exits 1 (after one line saying why) unless that device can run — the GPU tests' skip check.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "ops/backend.h"

namespace txs::cli {

void register_devices_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("devices", "list the compute devices (backends) this build can use here");
  auto require = std::make_shared<std::string>();
  cmd->add_option("--require", *require, "exit 1 unless this device (cpu or cuda) can run")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->callback([=] {
    const std::string cuda_why = cuda_unavailable_reason();
    fmt::print("cpu: {}\n", device_description(Device::Cpu));
    fmt::print("cuda: {}\n", cuda_why.empty() ? device_description(Device::Cuda) : "unavailable: " + cuda_why);
    if (*require == "cuda" && !cuda_why.empty()) std::exit(1);
  });
}

}  // namespace txs::cli
