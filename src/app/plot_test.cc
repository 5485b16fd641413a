#include "app/plot.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace gradacc {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir() {
  const fs::path d = fs::temp_directory_path() / ("gradacc_plot_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

// A step log shaped like `gradacc train --log` output, with an eval record at the end.
std::string write_log(const fs::path& path, double scale) {
  std::ofstream out(path);
  for (int s = 1; s <= 40; ++s) {
    out << nlohmann::json{{"step", s},
                          {"loss", scale * 2.3 / s},
                          {"lr", 1e-3},
                          {"grad_norm", 1.0 / s},
                          {"samples_per_s", 1000.0 + s}}
               .dump()
        << "\n";
  }
  out << R"({"event":"eval","split":"test","accuracy":0.9})"
      << "\n";
  return path.string();
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(Plot, DrawsSeveralRunsAsPngAndSvg) {
  // gnuplot is a run-time dependency of `plot` alone (scripts/setup.sh installs it; a bare GPU
  // machine may not have it).
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) GTEST_SKIP() << "gnuplot is not installed here";
  const fs::path d = temp_dir();
  PlotOptions o;
  o.logs = {write_log(d / "accumulated.jsonl", 1.0), write_log(d / "full.jsonl", 1.1)};
  o.metrics = {"loss", "lr", "grad_norm"};
  o.output = (d / "runs.png").string();
  plot_runs(o);
  const std::string png = read_all(o.output);
  ASSERT_GT(png.size(), 10000u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));

  o.output = (d / "runs.svg").string();
  o.labels = {"accumulated 8x32", "full batch 256"};
  plot_runs(o);
  const std::string svg = read_all(o.output);
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("accumulated 8x32"), std::string::npos);
  EXPECT_NE(svg.find("full batch 256"), std::string::npos);
  fs::remove_all(d);
}

TEST(Plot, RejectsBadInputWithoutWritingTheOutput) {
  const fs::path d = temp_dir();
  const std::string good = write_log(d / "good.jsonl", 1.0);
  std::ofstream(d / "bad.jsonl") << "{\"step\": 1, \"loss\": 2}\nnot json\n";
  std::ofstream(d / "empty.jsonl") << "";
  auto expect_error = [&](PlotOptions o, const std::string& fragment) {
    try {
      plot_runs(o);
      FAIL() << "accepted: " << fragment;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(o.output)) << o.output;
  };
  const std::string out = (d / "x.png").string();
  expect_error({{(d / "bad.jsonl").string()}, {}, {"loss"}, out, ""}, "bad.jsonl:2: not a JSON line");
  expect_error({{(d / "empty.jsonl").string()}, {}, {"loss"}, out, ""}, "no step records");
  expect_error({{good}, {}, {"perplexity"}, out, ""}, "no numeric 'perplexity'");
  expect_error({{good}, {}, {"loss"}, (d / "x.jpg").string(), ""}, "must end in .png or .svg");
  expect_error({{good}, {"a", "b"}, {"loss"}, out, ""}, "2 labels for 1 logs");
  expect_error({{(d / "missing.jsonl").string()}, {}, {"loss"}, out, ""}, "no such file");
  fs::remove_all(d);
}

// Input never becomes gnuplot code: a line break in --title, in a --labels entry or in a log
// file's name would end the quoted string's command and start one of the attacker's (here
// system("touch ...")). Each is refused before gnuplot runs, and nothing is executed or written.
TEST(Plot, ControlCharactersInTitlesLabelsAndFileNamesNeverReachGnuplot) {
  const fs::path d = temp_dir();
  const fs::path pwned = d / "pwned";
  const std::string payload = "x'\nsystem(\"touch " + pwned.string() + "\")\nset title 'y";
  const std::string log = write_log(d / "run.jsonl", 1.0);
  PlotOptions o;
  o.logs = {log};
  o.output = (d / "out.png").string();
  o.title = payload;
  EXPECT_THROW(plot_runs(o), std::runtime_error);
  o.title = "it's fine";  // a quote alone is escaped, not refused
  o.labels = {payload};
  EXPECT_THROW(plot_runs(o), std::runtime_error);
  o.labels.clear();
  const fs::path evil = d / "a\nsystem(\"touch pwned\")\n.jsonl";
  fs::copy_file(log, evil);
  o.logs = {evil.string()};
  try {
    plot_runs(o);
    FAIL() << "a log file name with a line break reached the script";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("control character"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line";
  }
  o.logs = {log};
  o.metrics = {"loss\nsystem('touch pwned')"};
  EXPECT_THROW(plot_runs(o), std::runtime_error);
  EXPECT_FALSE(fs::exists(pwned));
  EXPECT_FALSE(fs::exists(d / "pwned"));
  EXPECT_FALSE(fs::exists(o.output));
  fs::remove_all(d);
}

}  // namespace
}  // namespace gradacc
