// `chat` (SPEC §9) driven through its standard input on the real stories260K: a first turn in the
// Alpaca template answers as `generate --instruction` does, /regen writes the same greedy reply
// again, /clear starts over, old turns are dropped when the context fills (and it says so), and
// bad flags and commands get one-line errors.
#include <gtest/gtest.h>

#include <random>

#include "la/io/adapter_file.h"
#include "la/io/loader.h"
#include "support/test_support.h"

using namespace la;
using la::test::run_cli;
using la::test::run_cli_with_input;

namespace {

std::string model_flags() {
  return " --model " + test::shared_path("llama2c/stories260K.bin") + " --tokenizer " +
         test::shared_path("llama2c/tok512.bin") + " --threads 1";
}

size_t count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace

TEST(Chat, FirstTurnIsGenerateInstructionAndRegenRepeatsIt) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  test::TempDir dir;
  // An adapter with gates away from zero, so its replies differ from the base's.
  const auto w = load_model(test::shared_path("llama2c/stories260K.bin"));
  Adapter a = Adapter::create(w->config, 8, 4, GateMode::Tanh, 5);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.5f);
  for (float& g : a.gate()) g = nd(rng);
  const std::string ap = dir.file("a.safetensors");
  save_adapter(a, ap);
  for (const std::string& adapter : {std::string(), " --adapter " + ap}) {
    const auto g = run_cli("generate" + model_flags() + adapter +
                           " --instruction 'Tell me about the park' --temperature 0 -n 24 -q");
    ASSERT_EQ(g.exit_code, 0) << g.err;
    const std::string reply = g.out.substr(0, g.out.size() - 1);  // generate ends with a newline
    ASSERT_FALSE(reply.empty());
    const auto c = run_cli_with_input("chat" + model_flags() + adapter + " --temperature 0 -n 24",
                                      "Tell me about the park\n/regen\n/clear\nTell me about the park\n/exit\n");
    ASSERT_EQ(c.exit_code, 0) << c.err;
    // The reply three times: the first turn, /regen, and the same first turn after /clear.
    EXPECT_EQ(count(c.out, reply + "\n"), 3u) << c.out << "\n--- want:\n" << reply;
    EXPECT_NE(c.err.find("[conversation cleared]"), std::string::npos);
    EXPECT_NE(c.err.find("template alpaca"), std::string::npos) << c.err;
  }
}

TEST(Chat, OldTurnsAreDroppedWhenTheContextFills) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  std::string input;
  for (int i = 0; i < 6; ++i)
    input += "Tell me a story about a cat and a dog in the big park, number " + std::to_string(i) + "\n";
  const auto c =
      run_cli_with_input("chat" + model_flags() + " --context 160 -n 16 --temperature 0 --system 'Be kind.'", input);
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_NE(c.err.find("[context full: the oldest"), std::string::npos) << c.err;
  // Every turn got a reply line.
  EXPECT_GE(count(c.out, "\n"), 6u);
}

TEST(Chat, BadInputGetsOneLine) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  const auto t = run_cli_with_input("chat" + model_flags() + " --template nosuch", "hi\n");
  EXPECT_EQ(t.exit_code, 1);
  EXPECT_NE(t.err.find("nosuch"), std::string::npos) << t.err;
  EXPECT_EQ(count(t.err, "\n"), 1u) << t.err;
  // /image without --clip: an error line, and the conversation goes on.
  const auto i = run_cli_with_input("chat" + model_flags() + " -n 4 --temperature 0", "/image x.png\nHello\n");
  EXPECT_EQ(i.exit_code, 0) << i.err;
  EXPECT_NE(i.err.find("error: /image needs --clip"), std::string::npos) << i.err;
  EXPECT_FALSE(i.out.empty());
  // A message longer than the whole context is refused, and the next one answered.
  const std::string huge(4000, 'a');
  const auto h = run_cli_with_input("chat" + model_flags() + " --context 64 -n 4 --temperature 0", huge + "\nHi\n");
  EXPECT_EQ(h.exit_code, 0) << h.err;
  EXPECT_NE(h.err.find("does not fit the context"), std::string::npos) << h.err;
}
