// transxssm: one program, subcommands registered by each layer's cmd_*.cpp.
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"
#include "dist/communicator.h"

int main(int argc, char** argv) {
  CLI::App app{"transxssm — train, evaluate and run TransXSSM hybrid SSM/attention language models"};
  app.require_subcommand(1);
  // Says whether this build trains across processes (tests/test_mpi.sh reads it).
  const std::string mpi = txs::dist::mpi_description();
  app.set_version_flag("--version", "transxssm 0.1.0 (data parallelism: " + (mpi.empty() ? "none, built without MPI" : "MPI, " + mpi) + ")");
  txs::cli::register_model_commands(app);
  txs::cli::register_train_command(app);
  txs::cli::register_tokenizer_commands(app);
  txs::cli::register_infer_commands(app);
  txs::cli::register_eval_commands(app);
  txs::cli::register_study_command(app);
  txs::cli::register_devices_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const txs::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
