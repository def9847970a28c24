// The Alpaca prompt templates, byte-exact (SPEC §3). The response follows "### Response:"
// directly.
#pragma once
#include <string>

namespace la {

std::string alpaca_prompt(const std::string& instruction, const std::string& input);

}  // namespace la
