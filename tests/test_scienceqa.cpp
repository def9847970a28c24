// ScienceQA (SPEC §8): the QCM-A records of real problems byte for byte, the answer parser (the
// official regex), the scorer's categories on hand-made problems, the seeded random fallback for
// unreadable answers, one-line errors for damaged files, and `scienceqa prepare` / `eval` end to
// end on the 150 shared problems with the real stories260K model.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "la/core/error.h"
#include "la/core/rng.h"
#include "la/data/dataset.h"
#include "la/data/scienceqa.h"
#include "support/test_support.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using la::ScienceQAProblem;
using la::test::expect_error;
using la::test::run_cli;
using la::test::shell_quote;
using la::test::TempDir;
using la::test::write_text;

constexpr const char* kProblems = "scienceqa/problems_small150.json";
constexpr const char* kSplits = "scienceqa/pid_splits_small150.json";
constexpr const char* kOfficialSplits = "scienceqa/pid_splits.json";
constexpr const char* kStories = "llama2c/stories260K.bin";
constexpr const char* kStoriesTok = "llama2c/tok512.model";

std::string shared(const std::string& rel) {
  return la::test::shared_path(rel);
}
std::string q(const std::string& s) {
  return shell_quote(s);
}

ScienceQAProblem make_problem(const std::string& subject, const std::string& grade, const std::string& hint,
                              const std::string& image, int n_choices = 4, int answer = 0) {
  ScienceQAProblem p;
  p.pid = "p";
  p.question = "Which one?";
  p.subject = subject;
  p.grade = grade;
  p.hint = hint;
  p.image = image;
  for (int i = 0; i < n_choices; ++i) p.choices.push_back("choice " + std::to_string(i));
  p.answer = answer;
  return p;
}

// ---- records --------------------------------------------------------------------------------------

TEST(ScienceQARecord, QcmAOfRealProblemsByteForByte) {
  REQUIRE_SHARED_DATA(kProblems);
  const auto problems = la::load_scienceqa_problems(shared(kProblems));
  ASSERT_EQ(problems.size(), 150u);

  // Problem 4: no hint (the context reads N/A), line breaks and an em dash in the question, two choices.
  const ScienceQAProblem& p4 = problems.at("4");
  const la::ScienceQARecord r4 = la::scienceqa_record(p4, "");
  EXPECT_EQ(r4.instruction,
            "Question: Which figure of speech is used in this text?\nSing, O goddess, the anger of Achilles son of "
            "Peleus, that brought countless ills upon the Achaeans.\n\xE2\x80\x94Homer, The Iliad\nContext: "
            "N/A\nOptions: (A) chiasmus (B) apostrophe");
  EXPECT_EQ(r4.input, "");
  EXPECT_EQ(r4.output, "Answer: The answer is B.");
  EXPECT_EQ(r4.image, "");
  EXPECT_EQ(p4.subject, "language science");
  EXPECT_EQ(p4.grade, "grade11");
  EXPECT_EQ(p4.split, "test");
  EXPECT_EQ(p4.image, "");

  // Problem 172: a hint, four choices, the third right.
  const la::ScienceQARecord r172 = la::scienceqa_record(problems.at("172"), "");
  EXPECT_EQ(r172.instruction,
            "Question: How long is a hiking trail?\nContext: Select the best estimate.\nOptions: (A) 4 meters (B) 4 "
            "millimeters (C) 4 kilometers (D) 4 centimeters");
  EXPECT_EQ(r172.output, "Answer: The answer is C.");

  // Problem 5 has an image (none here): the record carries the path it is given.
  EXPECT_EQ(problems.at("5").image, "image.png");
  EXPECT_EQ(la::scienceqa_record(problems.at("5"), "/x/test/5/image.png").image, "/x/test/5/image.png");
}

TEST(ScienceQARecord, SplitsOfTheSharedProblems) {
  REQUIRE_SHARED_DATA(kProblems);
  REQUIRE_SHARED_DATA(kSplits);
  const auto problems = la::load_scienceqa_problems(shared(kProblems));
  const auto test = la::load_scienceqa_split(shared(kSplits), "test");
  ASSERT_EQ(test.size(), 50u);
  const auto sel = la::select_scienceqa(problems, test, shared(kProblems), shared(kSplits), "test");
  EXPECT_EQ(sel.skipped, 0);
  ASSERT_EQ(sel.problems.size(), 50u);
  EXPECT_EQ(sel.problems.front().pid, "4");  // the split's order
  for (const auto& p : sel.problems) EXPECT_EQ(p.split, "test") << p.pid;

  // The official splits list every test problem; the 150 hold a few of them: the rest are skipped.
  if (la::test::shared_file_exists(kOfficialSplits)) {
    const auto all_test = la::load_scienceqa_split(shared(kOfficialSplits), "test");
    EXPECT_EQ(all_test.size(), 4241u);
    const auto s = la::select_scienceqa(problems, all_test, shared(kProblems), shared(kOfficialSplits), "test");
    EXPECT_EQ(static_cast<size_t>(s.skipped) + s.problems.size(), all_test.size());
    EXPECT_GT(s.skipped, 4000);
    for (const auto& p : s.problems) EXPECT_EQ(p.split, "test") << p.pid;
  }
}

TEST(ScienceQARecord, ImagesInEitherLayout) {
  TempDir d;
  fs::create_directories(d.file("test/7"));
  fs::create_directories(d.file("8"));
  fs::create_directories(d.file("test/9/image.png"));  // a folder of that name is no image
  write_text(d.file("test/7/image.png"), "png");
  write_text(d.file("8/image.png"), "png");
  auto with = [](const std::string& pid, const std::string& split, const std::string& image) {
    ScienceQAProblem p = make_problem("natural science", "grade1", "", image);
    p.pid = pid;
    p.split = split;
    return p;
  };
  EXPECT_EQ(la::find_scienceqa_image(with("7", "test", "image.png"), d.path(), "test"), d.file("test/7/image.png"));
  // minival is a subset of val: the problem's own split names the folder, then the one asked for.
  EXPECT_EQ(la::find_scienceqa_image(with("7", "", "image.png"), d.path(), "test"), d.file("test/7/image.png"));
  EXPECT_EQ(la::find_scienceqa_image(with("7", "test", "image.png"), d.path(), "minitest"), d.file("test/7/image.png"));
  EXPECT_EQ(la::find_scienceqa_image(with("8", "train", "image.png"), d.path(), "train"), d.file("8/image.png"));
  EXPECT_EQ(la::find_scienceqa_image(with("9", "test", "image.png"), d.path(), "test"), "");
  EXPECT_EQ(la::find_scienceqa_image(with("10", "test", "image.png"), d.path(), "test"), "");
  EXPECT_EQ(la::find_scienceqa_image(with("7", "test", ""), d.path(), "test"), "");  // no image: none looked for
  EXPECT_EQ(la::find_scienceqa_image(with("7", "test", "image.png"), "", "test"), "");
}

// ---- the answer parser ----------------------------------------------------------------------------

TEST(ScienceQAAnswer, TheSingleMatchOfTheOfficialRegex) {
  using la::parse_scienceqa_answer;
  EXPECT_EQ(parse_scienceqa_answer("Answer: The answer is B."), 'B');
  EXPECT_EQ(parse_scienceqa_answer("The answer is Z. Because."), 'Z');
  EXPECT_EQ(parse_scienceqa_answer("The answer is C.\nThe answer is"), 'C');  // the second has no letter
  // `.` is any character but a line break: a letter followed by anything counts, at the very end nothing.
  EXPECT_EQ(parse_scienceqa_answer("The answer is BC"), 'B');
  EXPECT_EQ(parse_scienceqa_answer("The answer is B"), std::nullopt);
  EXPECT_EQ(parse_scienceqa_answer("The answer is B\n"), std::nullopt);
  // None.
  EXPECT_EQ(parse_scienceqa_answer(""), std::nullopt);
  EXPECT_EQ(parse_scienceqa_answer("Once upon a time"), std::nullopt);
  EXPECT_EQ(parse_scienceqa_answer("The answer is (B)."), std::nullopt);
  EXPECT_EQ(parse_scienceqa_answer("The  answer is B."), std::nullopt);
  // Case matters.
  EXPECT_EQ(parse_scienceqa_answer("the answer is a."), std::nullopt);
  EXPECT_EQ(parse_scienceqa_answer("The answer is a."), std::nullopt);
  EXPECT_EQ(parse_scienceqa_answer("the answer is B."), std::nullopt);
  // Two matches are no answer, even when they agree.
  EXPECT_EQ(parse_scienceqa_answer("The answer is A. The answer is B."), std::nullopt);
  EXPECT_EQ(parse_scienceqa_answer("The answer is A. The answer is A."), std::nullopt);
  EXPECT_EQ(parse_scienceqa_answer("The answer is AThe answer is B."), 'A');  // the first match ate "T"
}

TEST(ScienceQAAnswer, JudgedAgainstTheProblemsChoices) {
  la::SplitMix64 rng{1};
  const ScienceQAProblem p = make_problem("natural science", "grade1", "", "", 2, 1);
  auto j = la::judge_scienceqa(p, "Answer: The answer is B.", la::InvalidAnswers::Wrong, rng);
  EXPECT_FALSE(j.invalid);
  EXPECT_TRUE(j.correct);
  EXPECT_EQ(j.predicted, 1);
  j = la::judge_scienceqa(p, "Answer: The answer is A.", la::InvalidAnswers::Wrong, rng);
  EXPECT_FALSE(j.invalid);
  EXPECT_FALSE(j.correct);
  // A letter past the last choice is read but cannot be taken: invalid, wrong.
  j = la::judge_scienceqa(p, "Answer: The answer is C.", la::InvalidAnswers::Wrong, rng);
  EXPECT_EQ(j.answer, 'C');
  EXPECT_TRUE(j.invalid);
  EXPECT_EQ(j.predicted, -1);
  EXPECT_FALSE(j.correct);
  j = la::judge_scienceqa(p, "no idea", la::InvalidAnswers::Wrong, rng);
  EXPECT_EQ(j.answer, std::nullopt);
  EXPECT_TRUE(j.invalid);
  EXPECT_FALSE(j.correct);
}

TEST(ScienceQAAnswer, RandomFallbackIsUniformAndReproduciblePerSeed) {
  const ScienceQAProblem p = make_problem("natural science", "grade1", "", "", 4, 0);
  // Invalid answers draw in order; valid ones draw nothing.
  auto draws = [&](uint64_t seed, bool with_valid_between) {
    la::SplitMix64 rng{seed};
    std::vector<int> picks;
    for (int i = 0; i < 400; ++i) {
      if (with_valid_between) {
        const auto v = la::judge_scienceqa(p, "The answer is D.", la::InvalidAnswers::Random, rng);
        EXPECT_EQ(v.predicted, 3);
        EXPECT_FALSE(v.invalid);
      }
      const auto j = la::judge_scienceqa(p, "gibberish", la::InvalidAnswers::Random, rng);
      EXPECT_TRUE(j.invalid);
      EXPECT_EQ(j.correct, j.predicted == 0);
      picks.push_back(j.predicted);
    }
    return picks;
  };
  const std::vector<int> a = draws(7, false);
  EXPECT_EQ(a, draws(7, false));
  EXPECT_EQ(a, draws(7, true));
  EXPECT_NE(a, draws(8, false));
  for (int c = 0; c < 4; ++c) {
    const auto n = std::count(a.begin(), a.end(), c);
    EXPECT_GT(n, 60) << "choice " << c;  // 100 expected of 400; a fair draw is below 60 with p < 1e-5
    EXPECT_LT(n, 140) << "choice " << c;
  }
  // Counted wrong by default: nothing drawn.
  la::SplitMix64 rng{7};
  const auto w = la::judge_scienceqa(p, "gibberish", la::InvalidAnswers::Wrong, rng);
  EXPECT_EQ(w.predicted, -1);
  EXPECT_FALSE(w.correct);
  EXPECT_EQ(rng.state, la::SplitMix64{7}.state);
}

// ---- scoring --------------------------------------------------------------------------------------

TEST(ScienceQAScore, TheOfficialCategories) {
  // subject, grade, hint, image; right or wrong; invalid.
  const std::string NAT = "natural science", LAN = "language science";
  const std::vector<ScienceQAProblem> ps = {
      make_problem(NAT, "grade1", "h", "image.png"),   // 0 right
      make_problem(NAT, "grade6", "", ""),             // 1 wrong (invalid)
      make_problem(NAT, "grade7", "h", ""),            // 2 right
      make_problem(LAN, "grade12", "", "image.png"),   // 3 right
      make_problem(LAN, "grade3", "", ""),             // 4 right
      make_problem(LAN, "grade10", "h", "image.png"),  // 5 wrong
      make_problem(NAT, "grade2", "", ""),             // 6 wrong (invalid)
      make_problem(LAN, "grade4", "h", ""),            // 7 right
  };
  const std::vector<bool> correct = {true, false, true, true, true, false, false, true};
  const std::vector<bool> invalid = {false, true, false, false, false, false, true, false};
  const la::ScienceQAScore s = la::score_scienceqa(ps, correct, invalid);
  EXPECT_EQ(s.problems, 8);
  EXPECT_EQ(s.correct, 5);
  EXPECT_EQ(s.invalid, 2);
  // Avg: 0 2 3 4 7 of all 8. NAT: {0 1 2 6} -> 0 2. SOC: none. LAN: {3 4 5 7} -> 3 4 7.
  // TXT (a hint): {0 2 5 7} -> 0 2 7. IMG: {0 3 5} -> 0 3. NO (neither): {1 4 6} -> 4.
  // G1-6: {0 1 4 6 7} -> 0 4 7. G7-12: {2 3 5} -> 2 3.
  const std::vector<std::optional<double>> want = {100.0 * 5 / 8, 100.0 * 2 / 4, std::nullopt,
                                                   100.0 * 3 / 4, 100.0 * 3 / 4, 100.0 * 2 / 3,
                                                   100.0 * 1 / 3, 100.0 * 3 / 5, 100.0 * 2 / 3};
  const std::vector<int64_t> counted = {8, 4, 0, 4, 4, 3, 3, 5, 3};
  for (size_t c = 0; c < la::kScienceQACategories.size(); ++c) {
    SCOPED_TRACE(la::kScienceQACategories[c]);
    EXPECT_EQ(s.counted[c], counted[c]);
    ASSERT_EQ(s.accuracy[c].has_value(), want[c].has_value());
    if (want[c]) {
      EXPECT_NEAR(*s.accuracy[c], *want[c], 1e-12);
    }
  }
  // A social-science problem fills SOC; a grade outside 1-12 counts in neither grade group.
  const ScienceQAProblem soc = make_problem("social science", "grade13", "", "");
  const la::ScienceQAScore t = la::score_scienceqa({soc}, {true}, {false});
  EXPECT_EQ(t.accuracy[2], 100.0);
  EXPECT_EQ(t.accuracy[7], std::nullopt);
  EXPECT_EQ(t.accuracy[8], std::nullopt);
  EXPECT_THROW(la::score_scienceqa(ps, {true}, {false}), la::Error);
}

// ---- damaged files --------------------------------------------------------------------------------

TEST(ScienceQAFiles, DamagedProblemsGiveOneLineErrorsNamingTheFile) {
  TempDir d;
  const std::string f = d.file("problems.json");
  auto problems_with = [&](const std::string& body) {
    write_text(f, body);
    return [&] { la::load_scienceqa_problems(f); };
  };
  const std::string good =
      R"("question": "Q?", "choices": ["x", "y"], "answer": 1, "hint": "", "image": null, "subject": "natural science", "grade": "grade3")";
  // The good one loads.
  write_text(f, "{\"1\": {" + good + "}}");
  EXPECT_EQ(la::load_scienceqa_problems(f).at("1").answer, 1);

  expect_error(problems_with("{\"1\": {"), f, {"not JSON"});
  expect_error(problems_with(""), f, {"not JSON"});
  expect_error(problems_with("[1, 2]"), f, {"expected a JSON object"});
  expect_error(problems_with("{}"), f, {"no problems"});
  expect_error(problems_with("{\"1\": 5}"), f, {"problem \"1\"", "expected a JSON object"});
  expect_error(
      problems_with(
          R"({"1": {"choices": ["x"], "answer": 0, "hint": "", "image": null, "subject": "s", "grade": "g"}})"),
      f, {"problem \"1\"", "missing 'question'"});
  expect_error(
      problems_with(
          R"({"1": {"question": 3, "choices": ["x"], "answer": 0, "hint": "", "image": null, "subject": "s", "grade": "g"}})"),
      f, {"'question' must be a string"});
  expect_error(
      problems_with(
          R"({"1": {"question": "Q", "choices": "x", "answer": 0, "hint": "", "image": null, "subject": "s", "grade": "g"}})"),
      f, {"'choices' must be an array"});
  expect_error(
      problems_with(
          R"({"1": {"question": "Q", "choices": [], "answer": 0, "hint": "", "image": null, "subject": "s", "grade": "g"}})"),
      f, {"'choices' holds 0"});
  expect_error(
      problems_with(
          R"({"1": {"question": "Q", "choices": ["x", 2], "answer": 0, "hint": "", "image": null, "subject": "s", "grade": "g"}})"),
      f, {"'choices' must be an array of strings"});
  expect_error(
      problems_with(
          R"({"7": {"question": "Q", "choices": ["x", "y"], "answer": 2, "hint": "", "image": null, "subject": "s", "grade": "g"}})"),
      f, {"problem \"7\"", "'answer' 2 is out of range for 2 choices"});
  expect_error(
      problems_with(
          R"({"1": {"question": "Q", "choices": ["x", "y"], "answer": -1, "hint": "", "image": null, "subject": "s", "grade": "g"}})"),
      f, {"out of range"});
  expect_error(
      problems_with(
          R"({"1": {"question": "Q", "choices": ["x", "y"], "answer": "1", "hint": "", "image": null, "subject": "s", "grade": "g"}})"),
      f, {"'answer' must be an integer"});
  expect_error(
      problems_with(
          R"({"1": {"question": "Q", "choices": ["x", "y"], "answer": 0.5, "hint": "", "image": null, "subject": "s", "grade": "g"}})"),
      f, {"'answer' must be an integer"});
  expect_error(
      problems_with(
          R"({"1": {"question": "Q", "choices": ["x", "y"], "hint": "", "image": null, "subject": "s", "grade": "g"}})"),
      f, {"missing 'answer'"});
  expect_error(
      problems_with(
          R"({"1": {"question": "Q", "choices": ["x", "y"], "answer": 0, "hint": 3, "image": null, "subject": "s", "grade": "g"}})"),
      f, {"'hint' must be a string"});
  expect_error(
      problems_with(
          R"({"1": {"question": "Q", "choices": ["x", "y"], "answer": 0, "hint": "", "image": [], "subject": "s", "grade": "g"}})"),
      f, {"'image' must be a string"});
  expect_error(
      problems_with(
          R"({"1": {"question": "Q", "choices": ["x", "y"], "answer": 0, "hint": "", "image": null, "grade": "g"}})"),
      f, {"missing 'subject'"});
  expect_error(
      problems_with(
          R"({"1": {"question": "Q", "choices": ["x", "y"], "answer": 0, "hint": "", "image": null, "subject": "s", "grade": null}})"),
      f, {"'grade' must be a string"});
  expect_error([&] { la::load_scienceqa_problems(d.file("absent.json")); }, d.file("absent.json"), {});
}

TEST(ScienceQAFiles, DamagedSplitsGiveOneLineErrorsNamingTheFile) {
  TempDir d;
  const std::string f = d.file("pid_splits.json");
  auto split_of = [&](const std::string& body, const std::string& split) {
    write_text(f, body);
    return [&, split] { la::load_scienceqa_split(f, split); };
  };
  write_text(f, R"({"train": ["1", 2], "test": ["3"]})");
  EXPECT_EQ(la::load_scienceqa_split(f, "train"), (std::vector<std::string>{"1", "2"}));

  expect_error(split_of("{\"test\": [", "test"), f, {"not JSON"});
  expect_error(split_of("[]", "test"), f, {"expected a JSON object"});
  expect_error(split_of(R"({"train": ["1"], "val": ["2"]})", "test"), f, {"no split \"test\"", "train, val"});
  expect_error(split_of(R"({"test": []})", "test"), f, {"split \"test\" is empty"});
  expect_error(split_of(R"({"test": "1 2 3"})", "test"), f, {"must be an array"});
  expect_error(split_of(R"({"test": ["1", {"pid": 2}]})", "test"), f, {"pids must be strings"});

  // A split none of whose problems the problems file holds.
  const std::map<std::string, ScienceQAProblem> problems = {{"1", make_problem("natural science", "grade1", "", "")}};
  expect_error(
      [&] {
        la::select_scienceqa(problems, {"2", "3"}, "P.json", f, "test");
      },
      "P.json", {"none of the 2 problems", f});
  const auto sel = la::select_scienceqa(problems, {"2", "1", "3"}, "P.json", f, "test");
  EXPECT_EQ(sel.skipped, 2);
  EXPECT_EQ(sel.problems.size(), 1u);
}

// ---- the CLI --------------------------------------------------------------------------------------

std::string source_args(const std::string& split = "test") {
  return " --problems " + q(shared(kProblems)) + " --splits " + q(shared(kSplits)) + " --split " + split;
}

std::vector<json> read_jsonl(const std::string& path) {
  std::istringstream in(la::test::read_text(path));
  std::vector<json> out;
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

TEST(ScienceQACli, PrepareWritesOneRecordPerProblem) {
  REQUIRE_SHARED_DATA(kProblems);
  REQUIRE_SHARED_DATA(kSplits);
  TempDir d;
  const std::string out = d.file("test.jsonl");
  const auto r = run_cli("scienceqa prepare" + source_args() + " --out " + q(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("wrote 50 records"), std::string::npos) << r.out;
  const std::vector<json> recs = read_jsonl(out);
  ASSERT_EQ(recs.size(), 50u);
  for (const json& j : recs) {
    EXPECT_TRUE(j.at("instruction").get<std::string>().starts_with("Question: "));
    EXPECT_EQ(j.at("input"), "");
    EXPECT_TRUE(j.at("output").get<std::string>().starts_with("Answer: The answer is "));
    EXPECT_FALSE(j.contains("image"));  // no --images
  }
  const auto problems = la::load_scienceqa_problems(shared(kProblems));
  const la::ScienceQARecord r4 = la::scienceqa_record(problems.at("4"), "");
  EXPECT_EQ(recs[0]["instruction"], r4.instruction);
  EXPECT_EQ(recs[0]["output"], "Answer: The answer is B.");
  // The records read back as instruction data.
  const auto alpaca = la::load_alpaca(out);
  ASSERT_EQ(alpaca.size(), 50u);
  EXPECT_EQ(alpaca[0].instruction, r4.instruction);

  // With --images: the image that exists is named relative to the output's folder.
  fs::create_directories(d.file("images/test/5"));
  write_text(d.file("images/test/5/image.png"), "png");
  fs::create_directories(d.file("data"));
  const std::string out2 = d.file("data/test.jsonl");
  const auto r2 =
      run_cli("scienceqa prepare" + source_args() + " --images " + q(d.file("images")) + " --out " + q(out2));
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  EXPECT_NE(r2.err.find("have none under"), std::string::npos) << r2.err;  // the other images are missing
  const std::vector<json> recs2 = read_jsonl(out2);
  ASSERT_EQ(recs2.size(), 50u);
  int with_image = 0;
  for (size_t i = 0; i < recs2.size(); ++i) {
    if (!recs2[i].contains("image")) continue;
    ++with_image;
    EXPECT_EQ(i, 1u);  // pid 5, the second of the split
    EXPECT_EQ(recs2[i]["image"], "../images/test/5/image.png");
  }
  EXPECT_EQ(with_image, 1);

  // Errors: one line naming the file; nothing written.
  const std::string out3 = d.file("none.jsonl");
  const auto e1 = run_cli("scienceqa prepare" + source_args("nope") + " --out " + q(out3));
  EXPECT_EQ(e1.exit_code, 1);
  EXPECT_NE(e1.err.find(shared(kSplits)), std::string::npos) << e1.err;
  EXPECT_NE(e1.err.find("no split \"nope\""), std::string::npos) << e1.err;
  EXPECT_EQ(std::count(e1.err.begin(), e1.err.end(), '\n'), 1) << e1.err;
  EXPECT_FALSE(fs::exists(out3));
  const auto e2 = run_cli("scienceqa prepare" + source_args() + " --out " + q(shared(kProblems)));
  EXPECT_EQ(e2.exit_code, 1) << e2.err;
  const auto e3 = run_cli("scienceqa");
  EXPECT_EQ(e3.exit_code, 1) << e3.err;
}

TEST(ScienceQACli, EvalOnTheTestSplitWithStories260K) {
  REQUIRE_SHARED_DATA(kProblems);
  REQUIRE_SHARED_DATA(kSplits);
  REQUIRE_SHARED_DATA(kStories);
  REQUIRE_SHARED_DATA(kStoriesTok);
  TempDir d;
  const std::string model = " --model " + q(shared(kStories)) + " --tokenizer " + q(shared(kStoriesTok));
  const std::string preds_path = d.file("preds.json");
  const std::string args = "scienceqa eval" + model + source_args() + " --max-new-tokens 8 --threads 1";
  const auto r = run_cli(args + " --json --out " + q(preds_path));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json res = json::parse(r.out);
  for (const char* c : la::kScienceQACategories) {
    ASSERT_TRUE(res.contains(c)) << c;
    EXPECT_TRUE(res[c].is_number()) << c;  // the 50 problems touch every category
  }
  EXPECT_EQ(res["problems"], 50);

  const auto problems = la::load_scienceqa_problems(shared(kProblems));
  const json preds = json::parse(la::test::read_text(preds_path));
  ASSERT_EQ(preds.size(), 50u);
  int correct = 0, invalid = 0;
  for (const auto& [pid, e] : preds.items()) {
    const ScienceQAProblem& p = problems.at(pid);
    EXPECT_EQ(p.split, "test");
    const auto answer = la::parse_scienceqa_answer(e.at("prediction").get<std::string>());
    if (answer) {
      EXPECT_EQ(e.at("answer"), std::string(1, *answer));
    } else {
      EXPECT_TRUE(e.at("answer").is_null());
    }
    const bool readable = answer && *answer - 'A' < static_cast<int>(p.choices.size());
    invalid += readable ? 0 : 1;
    EXPECT_EQ(e.at("correct").get<bool>(), readable && *answer - 'A' == p.answer) << pid;
    correct += e.at("correct").get<bool>() ? 1 : 0;
    EXPECT_EQ(e.at("prediction").get<std::string>().find('\n'), std::string::npos);  // stopped at a line break
  }
  EXPECT_DOUBLE_EQ(res["Avg"].get<double>(), 100.0 * correct / 50);
  EXPECT_EQ(res["correct"], correct);
  EXPECT_EQ(res["invalid"], invalid);

  // The table: a header of the nine categories, their numbers, the counts.
  const auto t = run_cli(args);
  ASSERT_EQ(t.exit_code, 0) << t.err;
  std::istringstream lines(t.out);
  std::string head, row, counts;
  std::getline(lines, head);
  std::getline(lines, row);
  std::getline(lines, counts);
  std::istringstream hs(head), rs(row);
  std::vector<std::string> names, numbers;
  for (std::string w; hs >> w;) names.push_back(w);
  for (std::string w; rs >> w;) numbers.push_back(w);
  ASSERT_EQ(names.size(), la::kScienceQACategories.size()) << t.out;
  for (size_t c = 0; c < names.size(); ++c) EXPECT_EQ(names[c], la::kScienceQACategories[c]);
  ASSERT_EQ(numbers.size(), names.size()) << t.out;
  EXPECT_EQ(numbers[0], fmt::format("{:.2f}", 100.0 * correct / 50));
  EXPECT_EQ(counts, fmt::format("50 problems, {} correct, {} invalid answers (scored wrong)", correct, invalid));

  // --invalid random: an unreadable answer counts as a seeded random choice; the same seed gives the
  // same numbers, and Avg still counts the predictions marked correct.
  const std::string preds_random = d.file("preds_random.json");
  const auto r1 = run_cli(args + " --json --invalid random --seed 3 --out " + q(preds_random));
  const auto r2 = run_cli(args + " --json --invalid random --seed 3");
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  EXPECT_EQ(r1.out, r2.out);
  const json res_random = json::parse(r1.out);
  EXPECT_EQ(res_random["invalid"], invalid);
  int correct_random = 0;
  const json random_preds = json::parse(la::test::read_text(preds_random));
  for (const auto& [pid, e] : random_preds.items()) {
    const bool readable = !e.at("answer").is_null() && !e.contains("random_choice");
    EXPECT_EQ(e.at("prediction"), preds.at(pid).at("prediction")) << pid;  // greedy: the same text
    if (!readable) {
      ASSERT_TRUE(e.contains("random_choice")) << pid;
      EXPECT_EQ(e.at("correct").get<bool>(), e.at("random_choice") == e.at("expected")) << pid;
    }
    correct_random += e.at("correct").get<bool>() ? 1 : 0;
  }
  EXPECT_EQ(res_random["correct"], correct_random);
  EXPECT_GE(correct_random, correct);
  EXPECT_DOUBLE_EQ(res_random["Avg"].get<double>(), 100.0 * correct_random / 50);

  // Images: --clip needs a multi-modal adapter; with one, a problem's image (found under --images)
  // joins its prompts through the adapter's visual projection.
  fs::create_directories(d.file("images/test/5"));
  const std::string fixtures = std::string(LA_SOURCE_DIR) + "/tests/fixtures/clip/";
  fs::copy_file(fixtures + "images/rgb_41x19.png", d.file("images/test/5/image.png"));
  const std::string clip = " --clip " + q(fixtures + "tiny_clip_a") + " --images " + q(d.file("images"));
  const auto c = run_cli(args + clip);
  EXPECT_EQ(c.exit_code, 1);
  EXPECT_NE(c.err.find("--clip needs a multi-modal --adapter"), std::string::npos) << c.err;
  const auto m =
      run_cli(args + clip + " --no-feature-cache --json --adapter " + q(fixtures + "mm_adapter.safetensors"));
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_EQ(json::parse(m.out)["problems"], 50);
  EXPECT_NE(m.err.find("images: 1 of 50 problems answered with their image (1 encoded"), std::string::npos) << m.err;
}

}  // namespace
