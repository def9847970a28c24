// The restricted PyTorch checkpoint reader and the writer (formats/pth.h):
//   - our writer -> our reader (f32/f16/bf16, views sharing a storage, a root key);
//   - files written by real torch.save (1.13 and 2.x, committed under tests/fixtures/pth by
//     tests/reference/make_pth_fixtures.py) against the values torch itself reported;
//   - our writer's files read by torch.load(weights_only=True), when python3 imports torch;
//   - hostile pickles (os.system, posix.system, builtins.eval, REDUCE on a storage class, INST,
//     STACK_GLOBAL, unknown opcodes): a one-line error naming the file and the global, and the
//     payload's marker file never appears;
//   - damaged archives (every truncation, CRC, compression, byte order, storage extents).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "la/core/error.h"
#include "la/core/half.h"
#include "la/formats/pth.h"
#include "support/test_support.h"

namespace la {
namespace {

using test::expect_error;
using test::TempDir;

const std::string kFixtures = std::string(LA_SOURCE_DIR) + "/tests/fixtures/pth";

// Unlinks first: rewriting a file in place makes ext4 flush it on close (milliseconds per file,
// and the truncation test writes a thousand).
void write_bytes(const std::string& path, const std::string& bytes) {
  std::filesystem::remove(path);
  test::write_text(path, bytes);
}

// The tensor's values in row-major order of its shape, read through its strides.
std::vector<double> values(const PthTensor& t) {
  std::vector<double> out;
  const int64_t n = t.numel();
  std::vector<int64_t> index(t.shape.size(), 0);
  for (int64_t k = 0; k < n; ++k) {
    int64_t at = 0;
    for (size_t d = 0; d < index.size(); ++d) at += index[d] * t.strides[d];
    switch (t.dtype) {
      case DType::F32: out.push_back(static_cast<const float*>(t.data)[at]); break;
      case DType::F16: out.push_back(f16_to_f32(static_cast<const uint16_t*>(t.data)[at])); break;
      case DType::BF16: out.push_back(bf16_to_f32(static_cast<const uint16_t*>(t.data)[at])); break;
      default: ADD_FAILURE() << "unexpected dtype";
    }
    for (size_t d = index.size(); d-- > 0;) {
      if (++index[d] < t.shape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

std::vector<uint16_t> to_f16(const std::vector<float>& v) {
  std::vector<uint16_t> h;
  for (float x : v) h.push_back(f32_to_f16(x));
  return h;
}
std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> h;
  for (float x : v) h.push_back(f32_to_bf16(x));
  return h;
}

// Dyadic values, exact in every float type.
std::vector<float> dyadic(int start, int n) {
  std::vector<float> v;
  for (int i = 0; i < n; ++i) v.push_back(static_cast<float>((start + 5 * i) % 37 - 18) / 4.0f);
  return v;
}

// ------------------------------------------------------------------------------------------------
// Hand-written pickles (protocol 2), for what no writer of ours or torch's would produce.

struct Pickle {
  std::string b = std::string("\x80\x02", 2);
  Pickle& op(char o) {
    b.push_back(o);
    return *this;
  }
  Pickle& global(const std::string& module, const std::string& name) {
    b += 'c' + module + '\n' + name + '\n';
    return *this;
  }
  Pickle& str(const std::string& s) {
    b.push_back('X');
    const uint32_t n = static_cast<uint32_t>(s.size());
    b.append(reinterpret_cast<const char*>(&n), 4);
    b += s;
    return *this;
  }
  Pickle& int1(uint8_t v) {
    b.push_back('K');
    b.push_back(static_cast<char>(v));
    return *this;
  }
  Pickle& ints(const std::vector<uint8_t>& v) {  // a tuple of small ints
    op('(');
    for (uint8_t x : v) int1(x);
    return op('t');
  }
  // _rebuild_tensor_v2(('storage', torch.<storage>, key, 'cpu', numel), offset, shape, strides, False, OrderedDict())
  Pickle& tensor(const std::string& storage, const std::string& key, uint8_t numel, uint8_t offset,
                 const std::vector<uint8_t>& shape, const std::vector<uint8_t>& strides) {
    global("torch._utils", "_rebuild_tensor_v2").op('(').op('(').str("storage").global("torch", storage);
    str(key).str("cpu").int1(numel).op('t').op('Q');
    int1(offset).ints(shape).ints(strides).op('\x89');
    global("collections", "OrderedDict").op(')').op('R');
    return op('t').op('R');
  }
  std::string done() { return b + '.'; }
};

// A torch-like archive around `pkl`: a/data.pkl, a/byteorder, a/data/<k> for each storage, a/version.
std::string archive(const std::string& pkl, const std::vector<std::string>& storages = {},
                    const std::string& byteorder = "little") {
  std::vector<ZipRecord> r = {{"a/data.pkl", pkl}, {"a/byteorder", byteorder}};
  for (size_t k = 0; k < storages.size(); ++k) r.push_back({"a/data/" + std::to_string(k), storages[k]});
  r.push_back({"a/version", "3\n"});
  return stored_zip(r);
}

std::string floats(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

// {'w': a [2, 3] f32 tensor over a 6-value storage}
std::string one_tensor_pickle(uint8_t numel = 6, uint8_t offset = 0, std::vector<uint8_t> shape = {2, 3},
                              std::vector<uint8_t> strides = {3, 1}) {
  return Pickle().op('}').str("w").tensor("FloatStorage", "0", numel, offset, shape, strides).op('s').done();
}

// ------------------------------------------------------------------------------------------------
// Python with torch, for checking our files against torch.load.

bool have_torch() {
  return !test::torch_python().empty();
}

bool have_python() {
  static const bool ok = std::system("python3 -c 'import zipfile' >/dev/null 2>&1") == 0;
  return ok;
}

std::string capture(const std::string& cmd, int* status) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  *status = pclose(f);
  return out;
}

// ------------------------------------------------------------------------------------------------

// The writer's tensors: f32 / f16 / bf16 of their own storages, a 0-d and an empty tensor, and two
// views of the f32 one's storage (transposed; rows from an offset).
struct Sample {
  std::vector<float> w = dyadic(1, 12), n = dyadic(2, 4), s = {2.5f};
  std::vector<uint16_t> h = to_f16(dyadic(3, 5)), b = to_bf16(dyadic(4, 6));
  void add_to(PthWriter& wr) const {
    wr.add("layers.0.w", DType::F32, {3, 4}, w.data());
    wr.add("layers.0.norm", DType::F32, {4}, n.data());
    wr.add("half", DType::F16, {5}, h.data());
    wr.add("bf16", DType::BF16, {2, 3}, b.data());
    wr.add("scalar", DType::F32, {}, s.data());
    wr.add("empty", DType::BF16, {0, 7}, nullptr);
    wr.add_view("w_t", "layers.0.w", 0, {4, 3}, {1, 4});
    wr.add_view("w_rows", "layers.0.w", 4, {2, 4}, {4, 1});
  }
};

void expect_sample(const PthFile& f, const std::string& prefix) {
  const Sample s;
  std::vector<std::string> names;
  for (const PthTensor& t : f.tensors()) names.push_back(t.name);
  const std::vector<std::string> expected_names = {"layers.0.w", "layers.0.norm", "half", "bf16",
                                                   "scalar",     "empty",         "w_t",  "w_rows"};
  std::vector<std::string> want;
  for (const auto& n : expected_names) want.push_back(prefix + n);
  ASSERT_EQ(names, want);
  auto get = [&](const std::string& n) { return *f.find(prefix + n); };
  auto as_double = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  EXPECT_EQ(values(get("layers.0.w")), as_double(s.w));
  EXPECT_EQ(get("layers.0.w").shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(get("layers.0.w").strides, (std::vector<int64_t>{4, 1}));
  EXPECT_TRUE(get("layers.0.w").contiguous());
  EXPECT_EQ(values(get("layers.0.norm")), as_double(s.n));
  EXPECT_EQ(get("half").dtype, DType::F16);
  EXPECT_EQ(values(get("half")), as_double(dyadic(3, 5)));
  EXPECT_EQ(get("bf16").dtype, DType::BF16);
  EXPECT_EQ(values(get("bf16")), as_double(dyadic(4, 6)));
  EXPECT_TRUE(get("scalar").shape.empty());
  EXPECT_EQ(values(get("scalar")), (std::vector<double>{2.5}));
  EXPECT_EQ(get("empty").numel(), 0);
  EXPECT_EQ(get("empty").shape, (std::vector<int64_t>{0, 7}));
  // The views share the first tensor's bytes in the file.
  const PthTensor& t = get("w_t");
  EXPECT_FALSE(t.contiguous());
  EXPECT_EQ(t.data, get("layers.0.w").data);
  std::vector<double> transposed;
  for (int j = 0; j < 4; ++j)
    for (int i = 0; i < 3; ++i) transposed.push_back(s.w[static_cast<size_t>(i * 4 + j)]);
  EXPECT_EQ(values(t), transposed);
  const PthTensor& r = get("w_rows");
  EXPECT_TRUE(r.contiguous());
  EXPECT_EQ(r.data, static_cast<const float*>(get("layers.0.w").data) + 4);
  EXPECT_EQ(values(r), std::vector<double>(s.w.begin() + 4, s.w.end()));
  // Mapped, not copied; element-aligned.
  for (const PthTensor& x : f.tensors()) {
    const auto* p = static_cast<const uint8_t*>(x.data);
    EXPECT_TRUE(p >= f.file()->data() && p + x.nbytes() <= f.file()->data() + f.file()->size()) << x.name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (x.dtype == DType::F32 ? 4 : 2), 0u) << x.name;
  }
  EXPECT_EQ(f.find("nothing"), nullptr);
}

TEST(PthWriter, RoundTrip) {
  TempDir dir;
  Sample s;
  PthWriter w;
  s.add_to(w);
  w.write(dir.file("a.pth"));
  auto f = PthFile::open(dir.file("a.pth"));
  EXPECT_EQ(f->path(), dir.file("a.pth"));
  expect_sample(*f, "");
}

TEST(PthWriter, RootKeyNestsTheStateDict) {
  TempDir dir;
  Sample s;
  PthWriter w;
  s.add_to(w);
  w.set_root_key("model");
  w.write(dir.file("lit.pth"));
  expect_sample(*PthFile::open(dir.file("lit.pth")), "model.");
}

TEST(PthWriter, StorageDataIs64ByteAligned) {
  TempDir dir;
  Sample s;
  PthWriter w;
  s.add_to(w);
  w.write(dir.file("a.pth"));
  auto f = PthFile::open(dir.file("a.pth"));
  for (const PthTensor& t : f->tensors()) {
    if (t.name == "layers.0.w" || t.name == "half" || t.name == "bf16") {
      EXPECT_EQ((static_cast<const uint8_t*>(t.data) - f->file()->data()) % 64, 0) << t.name;
    }
  }
}

TEST(PthWriter, RefusesWhatItCannotWrite) {
  PthWriter w;
  float x[4] = {};
  w.add("a", DType::F32, {2, 2}, x);
  EXPECT_THROW(w.add("a", DType::F32, {2, 2}, x), Error);        // twice
  EXPECT_THROW(w.add("q", DType::Q8_0, {32}, x), Error);         // not a torch float type
  EXPECT_THROW(w.add("n", DType::F32, {2, -1}, x), Error);       // negative size
  EXPECT_THROW(w.add_view("v", "zz", 0, {1}, {1}), Error);       // no such base
  EXPECT_THROW(w.add_view("v", "a", 2, {2, 2}, {2, 1}), Error);  // past the storage
  EXPECT_THROW(w.add_view("v", "a", 0, {2, 2}, {1}), Error);     // strides do not match
  EXPECT_NO_THROW(w.add_view("v", "a", 1, {3}, {1}));
}

// What torch.save wrote (committed fixtures, so CI needs no torch), against what torch reported.
void check_torch_fixtures(const std::string& tag) {
  const auto expected = nlohmann::json::parse(test::read_text(kFixtures + "/" + tag + "_expected.json"));
  int files = 0;
  for (const auto& [file, tensors] : expected.items()) {
    if (file == "torch") continue;
    SCOPED_TRACE(file);
    ++files;
    auto f = PthFile::open(kFixtures + "/" + file);
    ASSERT_EQ(f->tensors().size(), tensors.size());
    for (size_t k = 0; k < tensors.size(); ++k) {
      const PthTensor& t = f->tensors()[k];
      const auto& e = tensors[k];
      SCOPED_TRACE(t.name);
      EXPECT_EQ(t.name, e["name"].get<std::string>());
      EXPECT_EQ(dtype_name(t.dtype), e["dtype"].get<std::string>());
      EXPECT_EQ(t.shape, e["shape"].get<std::vector<int64_t>>());
      EXPECT_EQ(t.strides, e["strides"].get<std::vector<int64_t>>());
      EXPECT_EQ(t.contiguous(), e["contiguous"].get<bool>());
      EXPECT_EQ(values(t), e["values"].get<std::vector<double>>());
      EXPECT_EQ(f->find(t.name), &t);
    }
  }
  EXPECT_EQ(files, 2);
}

TEST(PthTorchFiles, Torch1StateDictAndNested) {
  check_torch_fixtures("torch1");
}

TEST(PthTorchFiles, Torch2StateDictAndNested) {
  check_torch_fixtures("torch2");
}

TEST(PthTorchFiles, ViewsShareTheirStorage) {
  auto f = PthFile::open(kFixtures + "/torch2_state_dict.pth");
  const PthTensor* base = f->find("base");
  ASSERT_NE(base, nullptr);
  EXPECT_EQ(f->find("transposed")->data, base->data);
  EXPECT_EQ(f->find("rows")->data, static_cast<const float*>(base->data) + 4);
  EXPECT_EQ(f->find("column")->data, static_cast<const float*>(base->data) + 2);
  EXPECT_EQ(f->find("ids"), nullptr);  // int64: read, not listed
}

// torch.load (weights_only=True where this torch has it) reads what our writer wrote, values,
// shapes and strides (views stay views).
TEST(PthWriter, TorchLoadsIt) {
  if (!have_torch()) GTEST_SKIP() << "no python3 imports torch (set LA_TORCH_PYTHON to one that does)";
  TempDir dir;
  Sample s;
  PthWriter w;
  s.add_to(w);
  w.write(dir.file("ours.pth"));
  PthWriter lit;
  s.add_to(lit);
  lit.set_root_key("model");
  lit.write(dir.file("lit.pth"));
  test::write_text(dir.file("load.py"), R"(import json, sys, torch
out = {}
for path in sys.argv[1:]:
    try:
        d = torch.load(path, weights_only=True)
    except TypeError:  # a torch without weights_only
        d = torch.load(path)
    def walk(d, prefix):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, prefix + k + ".")
            else:
                out[path + ":" + prefix + k] = {"dtype": str(v.dtype), "shape": list(v.shape), "strides": list(v.stride()),
                                                "values": v.float().reshape(-1).tolist()}
    walk(d, "")
print(json.dumps(out))
)");
  int status = -1;
  const std::string out = capture(test::torch_python() + " " + dir.file("load.py") + " " + dir.file("ours.pth") + " " +
                                      dir.file("lit.pth") + " 2>&1",
                                  &status);
  ASSERT_EQ(status, 0) << out;
  const auto j = nlohmann::json::parse(out);
  for (const std::string file : {"ours.pth", "lit.pth"}) {
    auto f = PthFile::open(dir.file(file));
    ASSERT_EQ(f->tensors().size(), 8u);
    for (const PthTensor& t : f->tensors()) {
      SCOPED_TRACE(file + ":" + t.name);
      const auto& e = j.at(dir.file(file) + ":" + t.name);
      const char* dt = t.dtype == DType::F32   ? "torch.float32"
                       : t.dtype == DType::F16 ? "torch.float16"
                                               : "torch.bfloat16";
      EXPECT_EQ(e["dtype"].get<std::string>(), dt);
      EXPECT_EQ(e["shape"].get<std::vector<int64_t>>(), t.shape);
      EXPECT_EQ(e["strides"].get<std::vector<int64_t>>(), t.strides);
      EXPECT_EQ(e["values"].get<std::vector<double>>(), values(t));
    }
  }
}

// Python's zipfile (an independent ZIP reader) accepts our archives, ZIP64 forms included, and
// finds every CRC right.
TEST(PthZip, PythonZipfileReadsOurArchives) {
  if (!have_python()) GTEST_SKIP() << "no python3";
  TempDir dir;
  Sample s;
  PthWriter w;
  s.add_to(w);
  w.write(dir.file("a.pth"));
  write_bytes(dir.file("z64.pth"), stored_zip(read_stored_zip(dir.file("a.pth")), /*zip64=*/true));
  for (const char* name : {"a.pth", "z64.pth"}) {
    int status = -1;
    const std::string out = capture(
        "python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; "
        "print(\",\".join(z.namelist()))' " +
            dir.file(name) + " 2>&1",
        &status);
    EXPECT_EQ(status, 0) << name << ": " << out;
    EXPECT_EQ(out,
              "archive/data.pkl,archive/byteorder,archive/data/0,archive/data/1,archive/data/2,archive/data/3,"
              "archive/data/4,archive/data/5,archive/version\n")
        << name;
  }
}

TEST(PthZip, Zip64ExtraFieldsAreRead) {
  TempDir dir;
  Sample s;
  PthWriter w;
  s.add_to(w);
  w.write(dir.file("a.pth"));
  const auto records = read_stored_zip(dir.file("a.pth"));
  ASSERT_EQ(records.size(), 9u);
  EXPECT_EQ(records[0].name, "archive/data.pkl");
  EXPECT_EQ(records[1].bytes, "little");
  write_bytes(dir.file("z64.pth"), stored_zip(records, /*zip64=*/true));
  expect_sample(*PthFile::open(dir.file("z64.pth")), "");
  const auto again = read_stored_zip(dir.file("z64.pth"));
  ASSERT_EQ(again.size(), records.size());
  for (size_t k = 0; k < again.size(); ++k) {
    EXPECT_EQ(again[k].name, records[k].name);
    EXPECT_EQ(again[k].bytes, records[k].bytes);
  }
}

// ------------------------------------------------------------------------------------------------
// Hostile pickles

class PthHostile : public ::testing::Test {
 protected:
  // A pickle that would run `touch <marker>` if anything executed it.
  std::string marker() const { return dir_.file("pwned"); }
  void expect_refused(const std::string& pkl, std::initializer_list<std::string> needles) {
    const std::string p = dir_.file("evil.pth");
    write_bytes(p, archive(pkl, {floats(dyadic(0, 6))}));
    expect_error([&] { PthFile::open(p); }, p, needles);
    EXPECT_FALSE(std::filesystem::exists(marker())) << "the payload ran";
  }
  TempDir dir_;
};

TEST_F(PthHostile, OsSystemAndFriendsAreRefusedByName) {
  const std::string cmd = "touch " + marker();
  for (const auto& [module, name] :
       std::vector<std::pair<std::string, std::string>>{{"os", "system"},
                                                        {"posix", "system"},
                                                        {"builtins", "eval"},
                                                        {"builtins", "exec"},
                                                        {"__builtin__", "eval"},
                                                        {"subprocess", "Popen"},
                                                        {"torch", "load"},
                                                        {"torch._utils", "_rebuild_tensor"},
                                                        {"torch", "Tensor"},
                                                        {"collections", "defaultdict"}}) {
    SCOPED_TRACE(module + "." + name);
    // As pickle writes an object whose __reduce__ returns (os.system, ("touch ...",)).
    expect_refused(Pickle().global(module, name).str(cmd).op('\x85').op('R').done(),
                   {"data.pkl", "'" + module + "." + name + "'", "refusing"});
    // The same call hidden after a valid tensor: the scan finds it before anything is built.
    expect_refused(Pickle()
                       .op('}')
                       .op('(')
                       .str("w")
                       .tensor("FloatStorage", "0", 6, 0, {2, 3}, {3, 1})
                       .str("x")
                       .global(module, name)
                       .str(cmd)
                       .op('\x85')
                       .op('R')
                       .op('u')
                       .done(),
                   {"'" + module + "." + name + "'"});
  }
}

TEST_F(PthHostile, ReduceOnlyRebuildsTensorsAndDicts) {
  // A storage class called as a function (torch.FloatStorage(...)).
  expect_refused(Pickle().op('}').str("w").global("torch", "FloatStorage").int1(3).op('\x85').op('R').op('s').done(),
                 {"REDUCE calls torch.FloatStorage"});
  // REDUCE on a value that is not a global.
  expect_refused(Pickle().op('}').str("w").str("os").op(')').op('R').op('s').done(), {"REDUCE calls a str"});
  // OrderedDict with arguments, _rebuild_tensor_v2 with the wrong ones.
  expect_refused(Pickle().global("collections", "OrderedDict").str("x").op('\x85').op('R').done(), {"OrderedDict"});
  expect_refused(
      Pickle().op('}').str("w").global("torch._utils", "_rebuild_tensor_v2").str("x").op('\x85').op('R').op('s').done(),
      {"_rebuild_tensor_v2"});
  // A persistent id that is not a storage.
  expect_refused(Pickle().op('}').str("w").str("evil").op('Q').op('s').done(), {"persistent id"});
}

TEST_F(PthHostile, OpcodesThatBuildObjectsAreRefused) {
  expect_refused(Pickle().op('(').str("touch " + marker()).b + "ios\nsystem\n.", {"INST"});
  expect_refused(Pickle().global("os", "system").b + "\x81.", {"'os.system'"});  // the global first
  expect_refused(Pickle().op(')').op(')').b + "\x81.", {"NEWOBJ"});
  expect_refused(Pickle().str("os").str("system").b + "\x93.", {"STACK_GLOBAL"});
  expect_refused(Pickle().b + "\x82\x01.", {"EXT"});
  expect_refused(Pickle().b + "Pevil\n.", {"PERSID"});
  expect_refused(Pickle().b + "\xff.", {"unknown pickle opcode 0xff"});
  expect_refused(Pickle().op('}').b, {"STOP", "truncated"});
}

// A pickle made by Python's own pickle module from an object whose __reduce__ calls os.system,
// inside a torch-like archive (when python3 is here).
TEST_F(PthHostile, PythonPickledReduceIsRefused) {
  if (!have_python()) GTEST_SKIP() << "no python3";
  const std::string py = dir_.file("evil.py");
  test::write_text(py, R"(import os, pickle, sys, zipfile
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("evil/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
    z.writestr("evil/version", "3\n")
)");
  const std::string p = dir_.file("python_evil.pth");
  ASSERT_EQ(std::system(("python3 " + py + " " + p + " " + marker()).c_str()), 0);
  expect_error([&] { PthFile::open(p); }, p, {"'posix.system'", "refusing"});
  EXPECT_FALSE(std::filesystem::exists(marker()));
}

// ------------------------------------------------------------------------------------------------
// Damaged archives

TEST(PthDamaged, EveryTruncationIsAnError) {
  TempDir dir;
  Sample s;
  PthWriter w;
  s.add_to(w);
  w.write(dir.file("a.pth"));
  const std::string whole = test::read_text(dir.file("a.pth"));
  const std::string p = dir.file("cut.pth");
  for (size_t n = 0; n < whole.size(); ++n) {
    write_bytes(p, whole.substr(0, n));
    expect_error([&] { PthFile::open(p); }, p, {});
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "at " << n << " of " << whole.size() << " bytes";
      return;
    }
  }
}

TEST(PthDamaged, ClearErrors) {
  TempDir dir;
  const std::string p = dir.file("bad.pth");
  auto expect = [&](const std::string& bytes, std::initializer_list<std::string> needles) {
    write_bytes(p, bytes);
    expect_error([&] { PthFile::open(p); }, p, needles);
  };
  const std::string w6 = floats(dyadic(0, 6));
  expect("", {"not a PyTorch checkpoint"});
  expect("just some text, long enough to look for an end record", {"no ZIP end-of-central-directory"});
  expect(std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15), {"legacy format"});
  expect(archive(one_tensor_pickle(), {w6}, "big"), {"byteorder is 'big'"});
  expect(archive(one_tensor_pickle(), {}), {"storage '0' is missing"});
  expect(archive(one_tensor_pickle(), {w6.substr(0, 20)}), {"storage '0' holds 20 bytes, too few for 6 values"});
  expect(archive(one_tensor_pickle(6, 1), {w6}), {"runs past its storage"});                  // offset 1 + 6 values
  expect(archive(one_tensor_pickle(6, 0, {3, 3}, {3, 1}), {w6}), {"runs past its storage"});  // 9 of 6
  expect(archive(one_tensor_pickle(6, 0, {2, 3}, {1, 3}), {w6}), {"runs past its storage"});  // last at 1 + 6
  expect(archive(one_tensor_pickle(6, 0, {2, 3}, {3}), {w6}), {"2 sizes and 1 strides"});
  expect(stored_zip({{"a/version", "3\n"}}), {"without <name>/data.pkl"});
  expect(stored_zip({{"a/data.pkl", one_tensor_pickle()}, {"b/data.pkl", one_tensor_pickle()}}), {"two pickles"});
  expect(stored_zip({{"a/data.pkl", one_tensor_pickle()}, {"a/data.pkl", one_tensor_pickle()}}), {"appears twice"});
  expect(stored_zip({{"a/data.pkl", Pickle().op(']').done()}}), {"holds a list, not a dict"});
  expect(stored_zip({{"a/data.pkl", Pickle().op('}').op('}').done()}}), {"2 values on its stack"});
  expect(stored_zip({{"a/data.pkl", Pickle().op('0').done()}}), {"pops an empty stack"});
  expect(stored_zip({{"a/data.pkl", Pickle().op('h').op('\x05').done()}}), {"memo 5 was never stored"});
  expect(stored_zip({{"a/data.pkl", Pickle().op('s').done()}}), {"empty stack"});
  expect(stored_zip({{"a/data.pkl", Pickle().op('}').str("k").op('s').done()}}), {"empty stack"});
  expect(stored_zip({{"a/data.pkl", one_tensor_pickle()}, {"a/version", "three"}}), {"'version'"});
  // A dict that holds itself: bounded, not an endless walk.
  expect(stored_zip({{"a/data.pkl", Pickle().op('}').op('q').op('\0').str("x").op('h').op('\0').op('s').done()}}),
         {"more than 64 deep"});

  // Damage inside a valid archive: a CRC, the compression method, an offset.
  std::string good = archive(one_tensor_pickle(), {w6});
  write_bytes(p, good);
  EXPECT_NO_THROW(PthFile::open(p));
  std::string crc = good;
  crc[64 + 5] ^= 1;  // a byte of data.pkl (the first record's data starts at 64)
  expect(crc, {"data.pkl", "CRC"});
  const size_t cd = good.find("PK\x01\x02");
  ASSERT_NE(cd, std::string::npos);
  std::string deflated = good;
  deflated[cd + 10] = 8;
  expect(deflated, {"compressed (method 8)"});
  std::string moved = good;
  moved[cd + 42] = '\x7f';  // the local header offset
  expect(moved, {"local header"});
  std::string encrypted = good;
  encrypted[cd + 8] |= 1;
  expect(encrypted, {"encrypted"});
}

}  // namespace
}  // namespace la
