#include "gradacc/safetensors.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>

#include <ATen/ops/arange.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

#include "builtin/models.h"

#include "testing/test_util.h"

namespace gradacc {
namespace {

using testing::temp_path;

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  TensorMap in = {{"f32", at::randn({3, 4})},
                  {"f64", at::randn({2}, at::kDouble)},
                  {"bf16", at::randn({5}).to(at::kBFloat16)},
                  {"f16", at::randn({1, 1}).to(at::kHalf)},
                  {"i64", at::arange(7)},
                  {"u8", at::arange(9).to(at::kByte)},
                  {"scalar", at::randn({})},
                  {"strided", at::randn({4, 6}).t()}};
  const std::string path = temp_path("rt.safetensors");
  save_safetensors(path, in, {{"model", "cnn"}});
  StringMap meta;
  const TensorMap out = load_safetensors(path, &meta);
  ASSERT_EQ(out.size(), in.size());
  for (const auto& [k, t] : in) {
    EXPECT_EQ(out.at(k).scalar_type(), t.scalar_type()) << k;
    EXPECT_TRUE(out.at(k).equal(t)) << k;
  }
  EXPECT_EQ(meta.at("model"), "cnn");
  std::filesystem::remove(path);
}

TEST(Safetensors, ModuleRoundTripRestoresEveryWeightAndBuffer) {
  torch::manual_seed(0);
  auto a = make_model({ModelKind::kCnn, NormKind::kBatch}, 10);
  torch::manual_seed(1);
  auto b = make_model({ModelKind::kCnn, NormKind::kBatch}, 10);
  const std::string path = temp_path("module.safetensors");
  save_module(path, *a);
  load_module(path, *b);
  const TensorMap sa = module_state(*a), sb = module_state(*b);
  EXPECT_TRUE(sa.count("norm1.running_mean"));
  EXPECT_TRUE(sa.count("conv1.weight"));
  for (const auto& [k, t] : sa) EXPECT_TRUE(sb.at(k).equal(t)) << k;

  auto mlp = make_model({ModelKind::kMlp}, 10);
  EXPECT_THROW(load_module(path, *mlp), FormatError);  // another model's weights
  std::filesystem::remove(path);
}

void expect_rejected(const std::string& bytes, const std::string& fragment) {
  const std::string path = temp_path("bad.safetensors");
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  try {
    load_safetensors(path);
    FAIL() << "accepted: " << fragment;
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

std::string with_header(const std::string& json, const std::string& data) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  return s + json + data;
}

TEST(Safetensors, RejectsCorruptFiles) {
  expect_rejected("abc", "too short");
  expect_rejected(std::string("\xff\xff\xff\xff\0\0\0\0", 8) + "{}", "header length");
  expect_rejected(with_header("{not json", ""), "not valid JSON");
  expect_rejected(with_header(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, 'x')),
                  "outside");
  expect_rejected(with_header(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", std::string(16, 'x')),
                  "16 bytes for shape");
  expect_rejected(with_header(R"({"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})", "x"), "unsupported dtype");
  expect_rejected(
      with_header(
          R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
          std::string(6, 'x')),
      "overlap");
  expect_rejected(with_header(R"({"w":{"dtype":"F32"}})", ""), "malformed");
}

TEST(Safetensors, AFailedSaveLeavesNoFileBehind) {
  const std::string dir = temp_path("nodir") + "/sub/w.safetensors";
  EXPECT_THROW(save_safetensors(dir, {{"x", at::randn({2})}}), FormatError);
  EXPECT_FALSE(std::filesystem::exists(dir));
}

// The point of the format: Python users read our files with the `safetensors` package (and we read
// theirs). Uses the project's Python (GRADACC_PYTHON, set by CTest).
TEST(Safetensors, InteroperatesWithPythonSafetensors) {
  const char* py = GRADACC_PYTHON;  // the venv's python, compiled in by CMake
  ASSERT_TRUE(std::filesystem::exists(py)) << py;
  const std::string ours = temp_path("ours.safetensors"), theirs = temp_path("theirs.safetensors");
  torch::manual_seed(0);
  auto model = make_model({ModelKind::kCnn, NormKind::kGroup}, 10);
  save_module(ours, *model);
  const std::string script =
      "import sys, numpy as np\n"
      "from safetensors.numpy import load_file, save_file\n"
      "t = load_file(sys.argv[1])\n"
      "out = {k + '.sum': np.array([v.astype(np.float64).sum()]) for k, v in t.items()}\n"
      "out['names'] = np.frombuffer(','.join(sorted(t)).encode(), dtype=np.uint8).copy()\n"
      "save_file(out, sys.argv[2])\n";
  const std::string script_path = temp_path("interop.py");
  std::ofstream(script_path) << script;
  ASSERT_EQ(std::system((std::string(py) + " " + script_path + " " + ours + " " + theirs).c_str()), 0);
  const TensorMap back = load_safetensors(theirs);
  const TensorMap state = module_state(*model);
  const at::Tensor names = back.at("names");
  const std::string joined(static_cast<const char*>(names.data_ptr()), names.numel());
  std::string expected;
  for (const auto& [k, t] : state) expected += (expected.empty() ? "" : ",") + k;
  EXPECT_EQ(joined, expected);
  for (const auto& [k, t] : state) {
    EXPECT_NEAR(back.at(k + ".sum").item<double>(), t.to(at::kDouble).sum().item<double>(), 1e-9) << k;
  }
  for (const auto& p : {ours, theirs, script_path}) std::filesystem::remove(p);
}

// A weights file for --init: unverified files (no gradacc checksum, e.g. from Python) load and say
// so; wrong dtypes and non-finite values are refused and leave the module unchanged; a FIFO is
// refused before it is opened (it would block).
TEST(Safetensors, LoadModuleChecksDtypeFinitenessAndTheKindOfFile) {
  auto model = make_model({ModelKind::kMlp}, 10);
  const std::string path = temp_path("init.safetensors");
  save_module(path, *model);
  EXPECT_TRUE(load_module(path, *model).verified);

  TensorMap state = module_state(*model);
  std::string plain = temp_path("plain.safetensors");
  {  // the same tensors without the checksum, as another writer would store them
    save_safetensors(plain, state);
    std::ifstream in(plain, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    const auto at = bytes.find("gradacc_crc32");
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at, 13, "gradacc_crc3X");  // the key damaged: no longer a checksum
    std::ofstream(plain, std::ios::binary | std::ios::trunc) << bytes;
  }
  EXPECT_FALSE(load_module(plain, *model).verified);

  const at::Tensor before = model->parameters()[0].clone();
  TensorMap bad = state;
  bad.at("fc1.weight") = at::ones_like(bad.at("fc1.weight")).mul(std::numeric_limits<float>::infinity());
  save_safetensors(path, bad);
  EXPECT_THROW(load_module(path, *model), FormatError);
  bad = state;
  bad.at("fc1.weight") = at::zeros(bad.at("fc1.weight").sizes(), at::kLong);
  save_safetensors(path, bad);
  try {
    load_module(path, *model);
    FAIL() << "int64 weights loaded into a float model";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("not converted"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(at::equal(before, model->parameters()[0]));

  const std::string fifo = temp_path("weights.fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_THROW(load_module(fifo, *model), FormatError);
  for (const auto& p : {path, plain, fifo}) std::filesystem::remove(p);
}

}  // namespace
}  // namespace gradacc
