#include "la/data/scienceqa.h"

#include <exception>
#include <nlohmann/json.hpp>
#include <string_view>

#include "la/core/error.h"
#include "la/core/mapped_file.h"

namespace la {

namespace {

using nlohmann::json;

// The file parsed as JSON; an error naming it (with the parser's message on one line) otherwise.
json parse_json_file(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const std::exception& e) {
    std::string m = e.what();  // "[json.exception.parse_error.101] parse error at line 1, ..."
    if (const size_t close = m.find("] "); !m.empty() && m[0] == '[' && close != std::string::npos)
      m.erase(0, close + 2);
    for (char& c : m)
      if (c == '\n' || c == '\r') c = ' ';
    fail("{}: not JSON: {}", path, m);
  }
}

// A string field of problem `pid`. Required: present and a string; Nullable: present, a string or
// null (hint, image: null means none); Optional: may be absent or null. Absent or null -> "".
enum class Field { Required, Nullable, Optional };
std::string string_field(const json& v, const char* key, Field need, const std::string& path, const std::string& pid) {
  const auto it = v.find(key);
  if (it == v.end()) {
    if (need != Field::Optional) fail("{}: problem \"{}\": missing '{}'", path, printable(pid), key);
    return {};
  }
  if (it->is_null() && need != Field::Required) return {};
  if (!it->is_string())
    fail("{}: problem \"{}\": '{}' must be a string, got {}", path, printable(pid), key, it->type_name());
  return it->get<std::string>();
}

ScienceQAProblem to_problem(const json& v, const std::string& pid, const std::string& path) {
  if (!v.is_object()) fail("{}: problem \"{}\": expected a JSON object, got {}", path, printable(pid), v.type_name());
  ScienceQAProblem p;
  p.pid = pid;
  p.question = string_field(v, "question", Field::Required, path, pid);
  p.hint = string_field(v, "hint", Field::Nullable, path, pid);
  p.image = string_field(v, "image", Field::Nullable, path, pid);
  p.subject = string_field(v, "subject", Field::Required, path, pid);
  p.grade = string_field(v, "grade", Field::Required, path, pid);
  p.category = string_field(v, "category", Field::Optional, path, pid);
  p.split = string_field(v, "split", Field::Optional, path, pid);

  const auto choices = v.find("choices");
  if (choices == v.end()) fail("{}: problem \"{}\": missing 'choices'", path, printable(pid));
  if (!choices->is_array())
    fail("{}: problem \"{}\": 'choices' must be an array of strings, got {}", path, printable(pid),
         choices->type_name());
  if (choices->empty() || choices->size() > 26)
    fail("{}: problem \"{}\": 'choices' holds {} options (1 to 26 are possible)", path, printable(pid),
         choices->size());
  for (const json& c : *choices) {
    if (!c.is_string())
      fail("{}: problem \"{}\": 'choices' must be an array of strings, found {}", path, printable(pid), c.type_name());
    p.choices.push_back(c.get<std::string>());
  }

  const auto answer = v.find("answer");
  if (answer == v.end()) fail("{}: problem \"{}\": missing 'answer'", path, printable(pid));
  if (!answer->is_number_integer())
    fail("{}: problem \"{}\": 'answer' must be an integer (a 0-based choice index), got {}", path, printable(pid),
         answer->type_name());
  const auto a = answer->get<int64_t>();
  if (a < 0 || a >= static_cast<int64_t>(p.choices.size()))
    fail("{}: problem \"{}\": 'answer' {} is out of range for {} choices", path, printable(pid), a, p.choices.size());
  p.answer = static_cast<int>(a);
  return p;
}

}  // namespace

std::map<std::string, ScienceQAProblem> load_scienceqa_problems(const std::string& path) {
  const json j = parse_json_file(path);
  if (!j.is_object()) fail("{}: expected a JSON object of problems (pid -> problem), got {}", path, j.type_name());
  if (j.empty()) fail("{}: holds no problems", path);
  std::map<std::string, ScienceQAProblem> out;
  for (const auto& [pid, v] : j.items()) out.emplace(pid, to_problem(v, pid, path));
  return out;
}

std::vector<std::string> load_scienceqa_split(const std::string& path, const std::string& split) {
  const json j = parse_json_file(path);
  if (!j.is_object()) fail("{}: expected a JSON object of splits (name -> list of pids), got {}", path, j.type_name());
  const auto it = j.find(split);
  if (it == j.end()) {
    std::string names;
    for (const auto& [name, v] : j.items()) names += (names.empty() ? "" : ", ") + printable(name);
    fail("{}: no split \"{}\" (the file has: {})", path, printable(split), names.empty() ? "none" : names);
  }
  if (!it->is_array())
    fail("{}: split \"{}\" must be an array of pids, got {}", path, printable(split), it->type_name());
  if (it->empty()) fail("{}: split \"{}\" is empty", path, printable(split));
  std::vector<std::string> pids;
  for (const json& pid : *it) {
    // The official file lists pids as strings; a number is the same pid written without quotes.
    if (pid.is_string())
      pids.push_back(pid.get<std::string>());
    else if (pid.is_number_integer())
      pids.push_back(pid.dump());
    else
      fail("{}: split \"{}\": pids must be strings, found {}", path, printable(split), pid.type_name());
  }
  return pids;
}

ScienceQASelection select_scienceqa(const std::map<std::string, ScienceQAProblem>& problems,
                                    const std::vector<std::string>& pids, const std::string& problems_path,
                                    const std::string& splits_path, const std::string& split) {
  ScienceQASelection s;
  for (const std::string& pid : pids) {
    const auto it = problems.find(pid);
    if (it == problems.end())
      ++s.skipped;
    else
      s.problems.push_back(it->second);
  }
  if (s.problems.empty())
    fail("{}: none of the {} problems of split \"{}\" in {} is in this file", problems_path, pids.size(),
         printable(split), splits_path);
  return s;
}

char scienceqa_letter(int index) {
  return static_cast<char>('A' + index);
}

std::string find_scienceqa_image(const ScienceQAProblem& p, const std::string& images_dir, const std::string& split) {
  if (p.image.empty() || images_dir.empty()) return {};
  std::vector<std::string> candidates;
  if (!p.split.empty()) candidates.push_back(images_dir + "/" + p.split + "/" + p.pid + "/" + p.image);
  if (!split.empty() && split != p.split) candidates.push_back(images_dir + "/" + split + "/" + p.pid + "/" + p.image);
  candidates.push_back(images_dir + "/" + p.pid + "/" + p.image);
  for (const std::string& c : candidates)
    if (file_exists(c) && !is_directory(c)) return c;
  return {};
}

ScienceQARecord scienceqa_record(const ScienceQAProblem& p, const std::string& image_path) {
  ScienceQARecord r;
  std::string options;
  for (size_t i = 0; i < p.choices.size(); ++i) {
    if (i > 0) options += ' ';
    options += fmt::format("({}) {}", scienceqa_letter(static_cast<int>(i)), p.choices[i]);
  }
  r.instruction =
      "Question: " + p.question + "\nContext: " + (p.hint.empty() ? "N/A" : p.hint) + "\nOptions: " + options;
  r.output = fmt::format("Answer: The answer is {}.", scienceqa_letter(p.answer));
  r.image = image_path;
  return r;
}

std::optional<char> parse_scienceqa_answer(const std::string& text) {
  // findall(r'The answer is ([A-Z]).'): non-overlapping matches; Python's `.` takes any character
  // except '\n' (one byte here: for counting matches a multi-byte character's first byte will do).
  static constexpr std::string_view kLead = "The answer is ";
  std::optional<char> found;
  int matches = 0;
  size_t from = 0;
  for (size_t at; (at = text.find(kLead, from)) != std::string::npos;) {
    const size_t letter = at + kLead.size();
    if (letter + 1 < text.size() && text[letter] >= 'A' && text[letter] <= 'Z' && text[letter + 1] != '\n') {
      found = text[letter];
      ++matches;
      from = letter + 2;
    } else {
      from = at + 1;
    }
  }
  if (matches != 1) return std::nullopt;
  return found;
}

ScienceQAJudgement judge_scienceqa(const ScienceQAProblem& p, const std::string& generated, InvalidAnswers policy,
                                   SplitMix64& rng) {
  ScienceQAJudgement j;
  j.answer = parse_scienceqa_answer(generated);
  const int n = static_cast<int>(p.choices.size());
  if (j.answer && *j.answer - 'A' < n) {
    j.predicted = *j.answer - 'A';
  } else {
    // A letter past the last option is no answer either (the scorer looks it up among the
    // problem's options).
    j.invalid = true;
    if (policy == InvalidAnswers::Random) j.predicted = static_cast<int>(rng.below(static_cast<uint64_t>(n)));
  }
  j.correct = j.predicted == p.answer;
  return j;
}

bool in_scienceqa_category(const ScienceQAProblem& p, size_t c) {
  auto grade_in = [&](int lo, int hi) {
    for (int g = lo; g <= hi; ++g)
      if (p.grade == "grade" + std::to_string(g)) return true;
    return false;
  };
  switch (c) {
    case 0: return true;
    case 1: return p.subject == "natural science";
    case 2: return p.subject == "social science";
    case 3: return p.subject == "language science";
    case 4: return !p.hint.empty();
    case 5: return !p.image.empty();
    case 6: return p.hint.empty() && p.image.empty();
    case 7: return grade_in(1, 6);
    case 8: return grade_in(7, 12);
    default: fail("ScienceQA category {} does not exist", c);
  }
}

ScienceQAScore score_scienceqa(const std::vector<ScienceQAProblem>& problems, const std::vector<bool>& correct,
                               const std::vector<bool>& invalid) {
  if (correct.size() != problems.size() || invalid.size() != problems.size())
    fail("score_scienceqa: {} problems but {} judgements", problems.size(), correct.size());
  ScienceQAScore s;
  std::array<int64_t, kScienceQACategories.size()> right{};
  for (size_t i = 0; i < problems.size(); ++i) {
    for (size_t c = 0; c < kScienceQACategories.size(); ++c) {
      if (!in_scienceqa_category(problems[i], c)) continue;
      ++s.counted[c];
      right[c] += correct[i] ? 1 : 0;
    }
    s.correct += correct[i] ? 1 : 0;
    s.invalid += invalid[i] ? 1 : 0;
  }
  s.problems = static_cast<int64_t>(problems.size());
  for (size_t c = 0; c < kScienceQACategories.size(); ++c)
    if (s.counted[c] > 0) s.accuracy[c] = 100.0 * static_cast<double>(right[c]) / static_cast<double>(s.counted[c]);
  return s;
}

}  // namespace la
