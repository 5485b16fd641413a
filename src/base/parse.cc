#include "base/parse.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>
#include "gradacc/errors.h"

namespace gradacc {

std::string shown(const std::string& text, size_t max) {
  std::string out;
  size_t i = 0;
  for (; i < text.size() && out.size() < max; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    out += c < 0x20 || c == 0x7f ? fmt::format("\\x{:02x}", c) : std::string(1, text[i]);
  }
  return i < text.size() ? out + "…" : out;
}

int64_t parse_int(const std::string& s) {
  if (s.empty()) throw ConfigError("an integer is expected, got nothing");
  const size_t digits = s[0] == '-' ? 1 : 0;
  if (digits == s.size() || s.find_first_not_of("0123456789", digits) != std::string::npos) {
    throw ConfigError(fmt::format("'{}' is not an integer", shown(s)));
  }
  if (s.size() - digits > 1 && s[digits] == '0') {
    throw ConfigError(fmt::format("'{}' has a leading zero (octal is not read; write it without)", shown(s)));
  }
  errno = 0;
  const long long v = std::strtoll(s.c_str(), nullptr, 10);
  if (errno == ERANGE) throw ConfigError(fmt::format("'{}' does not fit a 64-bit integer", shown(s)));
  return v;
}

double parse_float(const std::string& s) {
  if (s.empty()) throw ConfigError("a number is expected, got nothing");
  if (std::isspace(static_cast<unsigned char>(s.front())) || std::isspace(static_cast<unsigned char>(s.back()))) {
    throw ConfigError(fmt::format("'{}' is not a number", shown(s)));
  }
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) throw ConfigError(fmt::format("'{}' is not a number", shown(s)));
  if (!std::isfinite(v) || errno == ERANGE) throw ConfigError(fmt::format("'{}' is not a finite number", shown(s)));
  return v;
}

int64_t parse_bytes(const std::string& s) {
  static const std::pair<const char*, double> kUnits[] = {
      {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0},
      {"KB", 1e3},     {"MB", 1e6},        {"GB", 1e9},           {"TB", 1e12},
      {"B", 1.0},
  };
  const size_t unit_at = s.find_first_not_of("0123456789.");
  const std::string number = s.substr(0, unit_at), unit = unit_at == std::string::npos ? "" : s.substr(unit_at);
  double scale = 0.0;
  if (unit.empty()) {
    scale = 1.0;
  } else {
    for (const auto& [name, factor] : kUnits) {
      if (unit == name) scale = factor;
    }
  }
  if (scale == 0.0 || number.empty() || number.front() == '.' || number.back() == '.') {
    throw ConfigError(fmt::format(
        "'{}' is not a size (expected bytes, or a number with KiB, MiB, GiB, TiB, KB, MB, GB or TB: 512MiB, 1.5GB)",
        shown(s)));
  }
  if (unit.empty()) {
    const int64_t bytes = parse_int(number);
    if (bytes < 1 || bytes > (int64_t{1} << 60))
      throw ConfigError(fmt::format("'{}' is not in 1..2^60 bytes", shown(s)));
    return bytes;
  }
  const double bytes = parse_float(number) * scale;
  if (!(bytes >= 1.0) || bytes > std::ldexp(1.0, 60))
    throw ConfigError(fmt::format("'{}' is not in 1 byte..2^60 bytes", shown(s)));
  return static_cast<int64_t>(bytes);
}

std::string format_bytes(int64_t bytes) {
  static const char* kNames[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (std::abs(v) >= 1024.0 && unit < 5) {
    v /= 1024.0;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.3g} {}", v, kNames[unit]);
}

}  // namespace gradacc
