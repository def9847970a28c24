// llama-adapter: fine-tune and run LLaMA models with LLaMA-Adapter.
#include <cstdio>
#include <string>

#include "commands.h"
#include "la/core/cpu.h"
#include "la/core/error.h"
#include "la/dist/comm.h"

namespace {

// One line on stderr, exit status 1. A rank of an MPI job ends the whole job: the others may be
// waiting for it in a collective (Comm::abort names the rank).
int fail_run(const std::string& message) {
  if (la::Comm::world().distributed()) la::Comm::world().abort(message, 1);
  std::fprintf(stderr, "error: %s\n", message.c_str());
  la::Comm::finalize();
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  la::ensure_openblas_coretype(argc, argv);
  la::Comm::init(&argc, &argv);  // a rank of an mpirun job joins it here (SPEC §11)
  CLI::App app{"llama-adapter: fine-tune LLaMA models with LLaMA-Adapter and run them", "llama-adapter"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "llama-adapter 0.1.0");
  la::cli::register_info(app);
  la::cli::register_generate(app);
  la::cli::register_finetune(app);
  la::cli::register_eval(app);
  la::cli::register_bench(app);
  la::cli::register_convert(app);
  la::cli::register_tokenize(app);
  la::cli::register_pretrain(app);
  la::cli::register_scienceqa(app);
  la::cli::register_encode_image(app);
  la::cli::register_chat(app);
  la::cli::register_serve(app);
  la::cli::register_demo(app);
  // After parsing (and --help), before the chosen command runs: threads, instruction set and bf16
  // arithmetic are put in force here, once, ahead of any model being loaded.
  app.parse_complete_callback([] { la::cli::apply_runtime_flags(); });
  // A word that names no command is reported as such (CLI11 would only say one is required).
  std::string names;
  bool known = false;
  for (const CLI::App* sub : app.get_subcommands({})) {
    names += (names.empty() ? "" : ", ") + sub->get_name();
    known = known || (argc > 1 && sub->get_name() == argv[1]);
  }
  if (argc > 1 && argv[1][0] != '-' && !known) {
    std::fprintf(stderr, "error: unknown command '%s' (commands: %s)\n", la::printable(argv[1]).c_str(), names.c_str());
    return 1;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // A bad flag is an error like any other: one line, exit status 1.
    return fail_run(la::printable(e.what()) + " (see --help)");
  } catch (const la::Error& e) {
    return fail_run(la::printable(e.what()));
  } catch (const std::bad_alloc&) {
    return fail_run("out of memory");
  } catch (const std::exception& e) {
    return fail_run(la::printable(e.what()));
  }
  la::Comm::finalize();
  return 0;
}
