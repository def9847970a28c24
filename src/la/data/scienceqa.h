// ScienceQA (SPEC §8, paper Table 2): the problems and their splits as the benchmark ships them
// (problems.json, pid_splits.json), the QCM-A instruction records built from them, the answer
// parser and the official scorer's categories.
//
//   instruction  Question: {question}\nContext: {hint or "N/A"}\nOptions: (A) c0 (B) c1 ...
//   input        (empty)
//   output       Answer: The answer is {letter}.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "la/core/rng.h"

namespace la {

struct ScienceQAProblem {
  std::string pid;
  std::string question, hint;  // hint: the context text, "" when there is none
  std::vector<std::string> choices;
  int answer = 0;               // index into choices
  std::string image;            // file name ("image.png"), "" when the problem has none
  std::string subject, grade;   // "natural science" | "social science" | "language science"; "grade1".."grade12"
  std::string category, split;  // informative; split ("train", "test", ...) locates the image
};

// problems.json: an object pid -> problem. Every problem is checked: question, choices (1 to 26
// strings), answer (an integer index into choices), hint (string or null), image (string or
// null), subject and grade (strings) are required; category and split optional strings. Errors
// are one line naming the file and the problem: not JSON, a missing field, a wrong type, an
// answer out of range.
std::map<std::string, ScienceQAProblem> load_scienceqa_problems(const std::string& path);

// pid_splits.json: an object split name -> list of pids. Returns the pids of `split`; an error
// names the file when it is malformed, when the split is not in it (listing those that are) or
// when the split is empty.
std::vector<std::string> load_scienceqa_split(const std::string& path, const std::string& split);

struct ScienceQASelection {
  std::vector<ScienceQAProblem> problems;  // in the split's order
  int64_t skipped = 0;                     // pids of the split that problems.json does not hold
};
// The problems of `pids`, skipping the ones absent from `problems` (a subset problems.json, such
// as the 150 shared ones); an error naming both files when none remain.
ScienceQASelection select_scienceqa(const std::map<std::string, ScienceQAProblem>& problems,
                                    const std::vector<std::string>& pids, const std::string& problems_path,
                                    const std::string& splits_path, const std::string& split);

// "A" for 0, "B" for 1, ...
char scienceqa_letter(int index);

// The problem's image under `images_dir` as ScienceQA lays them out, <dir>/<split>/<pid>/<image>
// (the problem's own split, then `split`), or <dir>/<pid>/<image>; "" when the problem has no
// image, `images_dir` is empty or no such file exists.
std::string find_scienceqa_image(const ScienceQAProblem& p, const std::string& images_dir, const std::string& split);

// The QCM-A record of a problem (an Alpaca record, input empty) and its image path ("" if none).
struct ScienceQARecord {
  std::string instruction, input, output, image;
};
ScienceQARecord scienceqa_record(const ScienceQAProblem& p, const std::string& image_path);

// The letter of the single match of `The answer is ([A-Z]).` in `text` (the official scorer's
// regex: `.` is any character but a line break), or nullopt when there is none or more than one.
std::optional<char> parse_scienceqa_answer(const std::string& text);

// How an answer that cannot be read counts: wrong (the default), or as a uniformly random choice
// (the original scorer's fallback), drawn from a seeded generator in problem order.
enum class InvalidAnswers { Wrong, Random };

struct ScienceQAJudgement {
  std::optional<char> answer;  // the parsed letter, nullopt when the text holds none
  bool invalid = false;        // no single answer, or a letter past the last choice
  int predicted = -1;          // the choice taken (the parsed one, or the random fallback's), -1 if none
  bool correct = false;
};
ScienceQAJudgement judge_scienceqa(const ScienceQAProblem& p, const std::string& generated, InvalidAnswers policy,
                                   SplitMix64& rng);

// The official scorer's categories, in its order.
inline constexpr std::array<const char*, 9> kScienceQACategories = {"Avg", "NAT", "SOC",  "LAN",  "TXT",
                                                                    "IMG", "NO",  "G1-6", "G7-12"};
// Whether a problem counts in category `c` (an index into kScienceQACategories): NAT/SOC/LAN by
// subject, TXT: a hint, IMG: an image, NO: neither, G1-6 / G7-12 by grade.
bool in_scienceqa_category(const ScienceQAProblem& p, size_t c);

struct ScienceQAScore {
  std::array<std::optional<double>, kScienceQACategories.size()> accuracy;  // percent; nullopt: no problem
  std::array<int64_t, kScienceQACategories.size()> counted{};               // problems in each category
  int64_t problems = 0, correct = 0, invalid = 0;
};
// `correct[i]` / `invalid[i]` belong to `problems[i]`.
ScienceQAScore score_scienceqa(const std::vector<ScienceQAProblem>& problems, const std::vector<bool>& correct,
                               const std::vector<bool>& invalid);

}  // namespace la
