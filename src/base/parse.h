// Strict parsing of numbers given as text (flags, environment variables, metadata), and a safe
// way to show untrusted text in a one-line message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace gradacc {

// Decimal digits with an optional '-': no '+', no spaces, no leading zeros (never octal), fits
// int64. Throws ConfigError saying what is wrong.
int64_t parse_int(const std::string& text);
// A finite number written in full (no trailing text, no spaces). Throws ConfigError.
double parse_float(const std::string& text);
// A size in bytes: plain bytes ("1048576"), or a number with a unit: KiB/MiB/GiB/TiB (powers of
// 1024), KB/MB/GB/TB (powers of 1000), B; e.g. "512MiB", "2GiB", "1.5GB". At least 1 byte, at most
// 2^60. Throws ConfigError saying what is wrong.
int64_t parse_bytes(const std::string& text);
// 1536 → "1.5 KiB" (three significant digits, binary units).
std::string format_bytes(int64_t bytes);
// `text` cut to `max` characters with "…", control characters shown as \xNN.
std::string shown(const std::string& text, size_t max = 40);

}  // namespace gradacc
