// llama-adapter: fine-tune and run LLaMA models with LLaMA-Adapter.
#include <cstdio>

#include "commands.h"
#include "la/core/cpu.h"
#include "la/core/error.h"

int main(int argc, char** argv) {
  la::ensure_openblas_coretype(argc, argv);
  CLI::App app{"llama-adapter: fine-tune LLaMA models with LLaMA-Adapter and run them", "llama-adapter"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "llama-adapter 0.1.0");
  la::cli::register_info(app);
  la::cli::register_generate(app);
  la::cli::register_finetune(app);
  la::cli::register_eval(app);
  la::cli::register_bench(app);
  la::cli::register_convert(app);
  la::cli::register_demo(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const la::Error& e) {
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
