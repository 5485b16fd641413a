// Run reports: draws metrics of one or more JSONL step logs against the optimizer step, one panel
// per metric and one line per run, as PNG or SVG (chosen by the output's extension).
//
// Drawing is gnuplot's job (Debian's gnuplot-nox, installed by scripts/setup.sh); gradacc reads
// and checks the logs, writes gnuplot's data and script to a temporary directory, and moves the
// finished picture into place, so a failure never leaves a half-written file at the target.
// Throws std::runtime_error with one line naming the bad file (and line) or the missing tool.
#pragma once

#include <string>
#include <vector>

namespace gradacc {

struct PlotOptions {
  std::vector<std::string> logs;                // JSONL files written by `gradacc train --log`
  std::vector<std::string> labels;              // one per log; default: the file names
  std::vector<std::string> metrics = {"loss"};  // any numeric step field: loss, lr, grad_norm, samples_per_s, ...
  std::string output;                           // FILE.png or FILE.svg
  std::string title;
};

void plot_runs(const PlotOptions& options);

}  // namespace gradacc
