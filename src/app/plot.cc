#include "app/plot.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/parse.h"

namespace gradacc {
namespace {

namespace fs = std::filesystem;

struct Series {
  std::vector<double> step;
  std::vector<std::vector<double>> values;  // [metric][row]
};

Series read_log(const std::string& path, const std::vector<std::string>& metrics) {
  if (const std::string problem = input_file_problem(path); !problem.empty()) {
    throw std::runtime_error(fmt::format("{}: {}", shown(path, 200), problem));
  }
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot read log", path));
  Series s;
  s.values.resize(metrics.size());
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      throw std::runtime_error(fmt::format("{}:{}: not a JSON line", path, n));
    }
    if (!j.is_object() || !j.contains("step")) continue;  // eval and other events
    s.step.push_back(j["step"].get<double>());
    for (size_t m = 0; m < metrics.size(); ++m) {
      if (!j.contains(metrics[m]) || !(j[metrics[m]].is_number() || j[metrics[m]].is_null())) {
        throw std::runtime_error(fmt::format("{}:{}: step record has no numeric '{}'", path, n, metrics[m]));
      }
      // null: a value JSON cannot hold (the inf norm of a window skipped on fp16 overflow); a gap.
      s.values[m].push_back(j[metrics[m]].is_null() ? std::numeric_limits<double>::quiet_NaN()
                                                    : j[metrics[m]].get<double>());
    }
  }
  if (s.step.empty()) throw std::runtime_error(fmt::format("{}: no step records (is it a gradacc --log file?)", path));
  return s;
}

// gnuplot string literal: single quotes, with embedded quotes doubled. Inside single quotes
// gnuplot gives no other character a meaning, but a line break ends the command: text with any
// control character is refused before it gets here (checked_text), so no input can add a command.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// `text` unchanged, or runtime_error naming `what` when it holds a control character.
const std::string& checked_text(const std::string& text, const std::string& what) {
  for (const char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      throw std::runtime_error(fmt::format(
          "{} '{}' holds a control character: refused (it would reach gnuplot's script)", what, shown(text)));
    }
  }
  return text;
}

// Runs gnuplot on `script` in `dir` without a shell (its stderr into err.txt there); returns the
// exit status, 127 when gnuplot cannot be run.
int run_gnuplot(const fs::path& dir) {
  const pid_t pid = ::fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    if (::chdir(dir.c_str()) != 0) ::_exit(126);
    const int err = ::open("err.txt", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (err >= 0) ::dup2(err, 2);
    ::execlp("gnuplot", "gnuplot", "plot.gp", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

void plot_runs(const PlotOptions& o) {
  if (o.logs.empty()) throw std::runtime_error("plot needs at least one JSONL log");
  if (o.metrics.empty()) throw std::runtime_error("plot needs at least one metric");
  if (!o.labels.empty() && o.labels.size() != o.logs.size()) {
    throw std::runtime_error(fmt::format("{} labels for {} logs", o.labels.size(), o.logs.size()));
  }
  const std::string ext = fs::path(o.output).extension().string();
  if (ext != ".png" && ext != ".svg") {
    throw std::runtime_error(fmt::format("output '{}' must end in .png or .svg", o.output));
  }
  for (const auto& m : o.metrics) {
    if (m.empty() || m.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos) {
      throw std::runtime_error(fmt::format("metric '{}' is not a log field name (letters, digits, _)", shown(m)));
    }
  }
  checked_text(o.title, "--title");
  for (const auto& l : o.labels) checked_text(l, "--labels entry");
  if (o.labels.empty()) {  // the legend shows the file names then
    for (const auto& log : o.logs) checked_text(fs::path(log).filename().string(), "log file name (give --labels)");
  }
  std::vector<Series> runs;
  for (const auto& log : o.logs) runs.push_back(read_log(log, o.metrics));

  const fs::path dir = fs::temp_directory_path() / fmt::format("gradacc_plot_{}", ::getpid());
  fs::create_directories(dir);
  struct Cleanup {
    fs::path d;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  } cleanup{dir};

  for (size_t r = 0; r < runs.size(); ++r) {
    std::ofstream data(dir / fmt::format("run{}.tsv", r));
    for (size_t i = 0; i < runs[r].step.size(); ++i) {
      data << runs[r].step[i];
      for (const auto& v : runs[r].values) data << '\t' << fmt::format("{:.10g}", v[i]);
      data << '\n';
    }
  }
  // gnuplot runs inside `dir`, so the script names its files relatively: no path reaches it.
  const fs::path picture = dir / ("out" + ext);
  std::ofstream script(dir / "plot.gp");
  const int height = 300 * static_cast<int>(o.metrics.size()) + 60;
  script << (ext == ".png" ? fmt::format("set terminal pngcairo noenhanced size 1000,{} font 'sans,10'\n", height)
                           : fmt::format("set terminal svg noenhanced size 1000,{} font 'sans,10'\n", height));
  script << "set output " << quoted("out" + ext) << "\n";
  script << "set datafile missing 'nan'\nset datafile separator '\\t'\nset grid\nset key outside right top\n";
  script << fmt::format("set multiplot layout {},1 title {}\n", o.metrics.size(),
                        quoted(o.title.empty() ? "gradacc" : o.title));
  for (size_t m = 0; m < o.metrics.size(); ++m) {
    script << "set xlabel 'optimizer step'\nset ylabel " << quoted(o.metrics[m]) << "\n";
    const bool log_scale = o.metrics[m] == "grad_norm";
    script << (log_scale ? "set logscale y\n" : "unset logscale y\n");
    script << "plot ";
    for (size_t r = 0; r < runs.size(); ++r) {
      const std::string label = o.labels.empty() ? fs::path(o.logs[r]).filename().string() : o.labels[r];
      script << (r ? ", " : "") << quoted(fmt::format("run{}.tsv", r))
             << fmt::format(" using 1:{} with lines lw 2 title ", m + 2) << quoted(label);
    }
    script << "\n";
  }
  script << "unset multiplot\n";
  script.close();

  if (!script) throw std::runtime_error(fmt::format("cannot write the plot script in {}", dir.string()));
  const int status = run_gnuplot(dir);
  if (status != 0 || !fs::exists(picture)) {
    if (status == 127) {
      throw std::runtime_error("gnuplot not found: install Debian's gnuplot-nox (scripts/setup.sh does)");
    }
    std::ifstream err(dir / "err.txt");
    std::string first;
    std::getline(err, first);
    throw std::runtime_error(fmt::format("gnuplot failed: {}", first));
  }
  // Into place in one step: copy beside the target, then rename.
  const fs::path tmp = fs::path(o.output).string() + fmt::format(".tmp.{}", ::getpid());
  std::error_code ec;
  fs::copy_file(picture, tmp, fs::copy_options::overwrite_existing, ec);
  if (ec) throw std::runtime_error(fmt::format("cannot write {}: {}", o.output, ec.message()));
  fs::rename(tmp, o.output, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw std::runtime_error(fmt::format("cannot write {}", o.output));
  }
}

}  // namespace gradacc
