#include "la/data/alpaca.h"

namespace la {

std::string alpaca_prompt(const std::string& instruction, const std::string& input) {
  if (!input.empty())
    return "Below is an instruction that describes a task, paired with an input that provides further context. "
           "Write a response that appropriately completes the request.\n\n### Instruction:\n" +
           instruction + "\n\n### Input:\n" + input + "\n\n### Response:";
  return "Below is an instruction that describes a task. Write a response that appropriately completes the "
         "request.\n\n### Instruction:\n" +
         instruction + "\n\n### Response:";
}

}  // namespace la
