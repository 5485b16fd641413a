#include "gradacc/util/parse.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>

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
  if (s.empty()) throw std::invalid_argument("an integer is expected, got nothing");
  const size_t digits = s[0] == '-' ? 1 : 0;
  if (digits == s.size() || s.find_first_not_of("0123456789", digits) != std::string::npos) {
    throw std::invalid_argument(fmt::format("'{}' is not an integer", shown(s)));
  }
  if (s.size() - digits > 1 && s[digits] == '0') {
    throw std::invalid_argument(fmt::format("'{}' has a leading zero (octal is not read; write it without)", shown(s)));
  }
  errno = 0;
  const long long v = std::strtoll(s.c_str(), nullptr, 10);
  if (errno == ERANGE) throw std::invalid_argument(fmt::format("'{}' does not fit a 64-bit integer", shown(s)));
  return v;
}

double parse_float(const std::string& s) {
  if (s.empty()) throw std::invalid_argument("a number is expected, got nothing");
  if (std::isspace(static_cast<unsigned char>(s.front())) || std::isspace(static_cast<unsigned char>(s.back()))) {
    throw std::invalid_argument(fmt::format("'{}' is not a number", shown(s)));
  }
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) throw std::invalid_argument(fmt::format("'{}' is not a number", shown(s)));
  if (!std::isfinite(v) || errno == ERANGE)
    throw std::invalid_argument(fmt::format("'{}' is not a finite number", shown(s)));
  return v;
}

}  // namespace gradacc
