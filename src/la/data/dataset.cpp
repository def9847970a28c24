#include "la/data/dataset.h"

#include <algorithm>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/core/rng.h"
#include "la/data/alpaca.h"

namespace la {

namespace {

using nlohmann::json;

bool is_json_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string read_file_bytes(const std::string& path) {
  return read_file(path);
}

// Offset of the first byte that does not start a well-formed UTF-8 character (overlong forms,
// surrogates, code points above U+10FFFF and cut-short sequences are all rejected), or npos.
size_t first_invalid_utf8(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<unsigned char>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const int n = utf8_char_length(s.substr(pos));
    if (n <= 0) return pos;
    pos += static_cast<size_t>(n);
  }
  return std::string_view::npos;
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; keep the readable part,
// on one line.
std::string json_message(const std::exception& e) {
  std::string m = e.what();
  if (!m.empty() && m[0] == '[') {
    const size_t close = m.find("] ");
    if (close != std::string::npos) m.erase(0, close + 2);
  }
  for (char& c : m)
    if (c == '\n' || c == '\r') c = ' ';
  return m;
}

const char* type_name(const json& v) {
  return v.type_name();
}

// `where` is "record 3" (JSON array, 0-based index) or "line 4" (JSONL, 1-based).
AlpacaRecord to_record(const json& v, const std::string& path, const std::string& where) {
  if (!v.is_object()) fail("{}: {}: expected a JSON object, got {}", path, where, type_name(v));
  AlpacaRecord r;
  auto required = [&](const char* key, std::string& out) {
    auto it = v.find(key);
    if (it == v.end()) fail("{}: {}: missing '{}'", path, where, key);
    if (!it->is_string()) fail("{}: {}: '{}' must be a string, got {}", path, where, key, type_name(*it));
    out = it->get<std::string>();
  };
  required("instruction", r.instruction);
  required("output", r.output);
  auto it = v.find("input");
  if (it != v.end() && !it->is_null()) {
    if (!it->is_string()) fail("{}: {}: 'input' must be a string, got {}", path, where, type_name(*it));
    r.input = it->get<std::string>();
  }
  // An image (SPEC §8): a path relative to the data file's folder.
  it = v.find("image");
  if (it != v.end() && !it->is_null()) {
    if (!it->is_string() || it->get_ref<const std::string&>().empty())
      fail("{}: {}: 'image' must be a non-empty string (a path relative to the data file)", path, where);
    const std::filesystem::path img(it->get<std::string>());
    r.image = img.is_absolute() ? img.string() : (std::filesystem::path(path).parent_path() / img).string();
  }
  return r;
}

}  // namespace

std::vector<std::string> load_corpus(const std::string& path) {
  std::string data = read_file_bytes(path);
  if (const size_t bad = first_invalid_utf8(data); bad != std::string_view::npos)
    fail("{}: invalid UTF-8 at byte offset {} (byte 0x{:02X})", path, bad, static_cast<unsigned char>(data[bad]));
  std::vector<std::string> docs;
  std::istringstream in(data);
  std::string line, doc;
  int64_t line_no = 0;
  if (path.ends_with(".jsonl")) {
    while (std::getline(in, line)) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json j;
      try {
        j = json::parse(line);
      } catch (const std::exception& e) {
        fail("{}: line {}: not JSON: {}", path, line_no, json_message(e));
      }
      if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
        fail("{}: line {}: expected an object with a \"text\" string", path, line_no);
      if (!j["text"].get_ref<const std::string&>().empty()) docs.push_back(j["text"].get<std::string>());
    }
  } else {
    // Documents are separated by blank lines; the lines of one document keep their newlines.
    auto flush = [&] {
      if (!doc.empty()) docs.push_back(doc);
      doc.clear();
    };
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) {
        flush();
        continue;
      }
      if (!doc.empty()) doc += '\n';
      doc += line;
    }
    flush();
  }
  if (docs.empty()) fail("{}: no documents (the corpus is empty)", path);
  return docs;
}

TokenizedDataset tokenize_corpus(const std::vector<std::string>& docs, const Tokenizer& tok, int64_t seq_len) {
  if (seq_len < 1) fail("sequence length must be at least 1");
  std::vector<int> stream;
  for (const std::string& d : docs) {
    const std::vector<int> t = tok.encode(d, true, true);
    stream.insert(stream.end(), t.begin(), t.end());
  }
  TokenizedDataset out;
  const auto n = static_cast<int64_t>(stream.size());
  for (int64_t start = 0; start + 1 < n; start += seq_len) {
    const int64_t end = std::min(n, start + seq_len + 1);
    Example e;
    e.tokens.assign(stream.begin() + start, stream.begin() + end);
    e.prompt_len = 0;
    out.total_tokens += static_cast<int64_t>(e.tokens.size());
    out.supervised_tokens += e.supervised();
    out.examples.push_back(std::move(e));
  }
  return out;
}

std::vector<AlpacaRecord> load_alpaca(const std::string& path) {
  std::string data = read_file_bytes(path);

  if (const size_t bad = first_invalid_utf8(data); bad != std::string_view::npos)
    fail("{}: invalid UTF-8 at byte offset {} (byte 0x{:02X})", path, bad, static_cast<unsigned char>(data[bad]));

  size_t start = 0;
  if (data.starts_with("\xEF\xBB\xBF")) start = 3;  // a UTF-8 byte-order mark (Windows editors)
  while (start < data.size() && is_json_space(data[start])) ++start;
  if (start == data.size()) fail("{}: no records (the file is empty)", path);

  std::vector<AlpacaRecord> records;
  const std::string_view body = std::string_view(data).substr(start);

  if (body[0] == '[') {
    json doc;
    try {
      doc = json::parse(body.begin(), body.end());
    } catch (const json::exception& e) {
      fail("{}: not valid JSON: {}", path, json_message(e));
    }
    records.reserve(doc.size());
    for (size_t i = 0; i < doc.size(); ++i) records.push_back(to_record(doc[i], path, fmt::format("record {}", i)));
  } else if (body[0] == '{') {
    // JSONL: one object per line; blank lines are skipped. Line numbers are 1-based over the
    // whole file.
    size_t line_no =
        1 + static_cast<size_t>(std::count(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(start), '\n'));
    size_t pos = start;  // only whitespace (and a BOM) precedes it, so it begins a line's content
    while (pos < data.size()) {
      size_t end = data.find('\n', pos);
      if (end == std::string::npos) end = data.size();
      std::string_view line = std::string_view(data).substr(pos, end - pos);
      while (!line.empty() && is_json_space(line.back())) line.remove_suffix(1);
      while (!line.empty() && is_json_space(line.front())) line.remove_prefix(1);
      if (!line.empty()) {
        json v;
        try {
          v = json::parse(line.begin(), line.end());
        } catch (const json::exception& e) {
          // A pretty-printed single object is a common mistake: say so instead of "line 1".
          if (records.empty() && json::accept(body.begin(), body.end()))
            fail("{}: a single multi-line JSON value; expected a JSON array of records or JSONL (one object per line)",
                 path);
          fail("{}: line {}: not valid JSON: {}", path, line_no, json_message(e));
        }
        records.push_back(to_record(v, path, fmt::format("line {}", line_no)));
      }
      pos = end + 1;
      ++line_no;
    }
  } else {
    fail(
        "{}: not JSON: expected a JSON array of records ('[') or JSONL objects ('{{'), found byte 0x{:02X} at offset "
        "{}",
        path, static_cast<unsigned char>(body[0]), start);
  }

  if (records.empty()) fail("{}: no records", path);
  return records;
}

int64_t Example::supervised() const {
  // Positions t in [0, n-1) predict tokens[t+1]; supervised when t + 1 >= prompt_len.
  // For prompt_len >= 1 this is n - prompt_len (clamped at 0).
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < 2) return 0;
  const int64_t first = std::max<int64_t>(prompt_len - 1, 0);
  return std::max<int64_t>(0, (n - 1) - first);
}

TokenizedDataset tokenize_alpaca(const std::vector<AlpacaRecord>& records, const Tokenizer& tok, int64_t max_seq_len) {
  if (max_seq_len < 2) fail("max_seq_len must be at least 2, got {}", max_seq_len);
  TokenizedDataset ds;
  ds.examples.resize(records.size());
  std::vector<char> cut(records.size(), 0);
  const int bos = tok.bos_id(), eos = tok.eos_id();
  const int64_t n = static_cast<int64_t>(records.size());

  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < n; ++i) {
    try {
      const AlpacaRecord& r = records[static_cast<size_t>(i)];
      const std::string prompt = alpaca_prompt(r.instruction, r.input);
      Example& ex = ds.examples[static_cast<size_t>(i)];
      ex.prompt_len = 1 + static_cast<int64_t>(tok.encode(prompt, false, false).size());
      const std::vector<int> body = tok.encode(prompt + r.output, false, false);
      ex.tokens.reserve(body.size() + 2);
      ex.tokens.push_back(bos);
      ex.tokens.insert(ex.tokens.end(), body.begin(), body.end());
      ex.tokens.push_back(eos);
      if (static_cast<int64_t>(ex.tokens.size()) > max_seq_len) {
        ex.tokens.resize(static_cast<size_t>(max_seq_len));
        ex.tokens.shrink_to_fit();
        cut[static_cast<size_t>(i)] = 1;
      }
    } catch (...) {
#pragma omp critical(la_tokenize_alpaca_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);

  for (size_t i = 0; i < ds.examples.size(); ++i) {
    ds.truncated += cut[i];
    ds.supervised_tokens += ds.examples[i].supervised();
    ds.total_tokens += static_cast<int64_t>(ds.examples[i].tokens.size());
  }
  return ds;
}

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  if (n < 0) fail("epoch_order: negative example count {}", n);
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  if (!shuffle || n < 2) return order;
  // The stream depends only on (seed, epoch): mix the seed, then the epoch, through splitmix64.
  SplitMix64 mix{seed};
  SplitMix64 rng{mix.next() ^ (static_cast<uint64_t>(epoch) * 0xD1B54A32D192ED03ULL)};
  rng.state = rng.next();
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i) + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

std::vector<std::vector<int64_t>> split_micro_batches(const std::vector<int64_t>& batch,
                                                      const std::vector<Example>& examples, int64_t micro_batch_size) {
  if (micro_batch_size < 1) fail("micro-batch size must be at least 1, got {}", micro_batch_size);
  for (int64_t idx : batch)
    if (idx < 0 || idx >= static_cast<int64_t>(examples.size()))
      fail("split_micro_batches: example index {} out of range (have {})", idx, examples.size());
  std::vector<int64_t> sorted = batch;
  std::stable_sort(sorted.begin(), sorted.end(), [&](int64_t a, int64_t b) {
    return examples[static_cast<size_t>(a)].tokens.size() < examples[static_cast<size_t>(b)].tokens.size();
  });
  std::vector<std::vector<int64_t>> out;
  const auto mb = static_cast<size_t>(micro_batch_size);
  for (size_t i = 0; i < sorted.size(); i += mb)
    out.emplace_back(sorted.begin() + static_cast<std::ptrdiff_t>(i),
                     sorted.begin() + static_cast<std::ptrdiff_t>(std::min(sorted.size(), i + mb)));
  return out;
}

}  // namespace la
