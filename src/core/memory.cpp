// The per-request memory limit: configured, or the machine's physical memory.
#include "saltatory/core/memory.hpp"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "saltatory/core/error.hpp"

namespace saltatory {

namespace {

std::atomic<int64_t> configured{0};

/// "123", "64M", "8G": bytes; sizes of 2^63 bytes or more (and "inf") mean unlimited. Throws
/// Error for anything else.
int64_t parse_bytes(const std::string& text) {
  const char* op = "SALTATORY_MEMORY_LIMIT";
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);  // beyond double: +-HUGE_VAL, no throw
  const auto used = static_cast<size_t>(end - text.c_str());
  check(used > 0, op, "'", text, "' is not a size in bytes (e.g. 8G)");
  const std::string suffix = text.substr(used);
  const std::string units = "KMGT";
  double scale = 1;
  if (!suffix.empty()) {
    const size_t power = units.find(static_cast<char>(std::toupper(suffix[0])));
    check(suffix.size() == 1 && power != std::string::npos, op, "'", text,
          "' has an unknown unit (use K, M, G or T)");
    for (size_t i = 0; i <= power; ++i) scale *= 1024;
  }
  const double bytes = value * scale;
  check(!std::isnan(bytes), op, "'", text, "' is not a size in bytes (e.g. 8G)");
  check(bytes >= 1, op, "'", text, "' must be at least one byte");
  constexpr double unlimited = 9223372036854775808.0;  // 2^63: no int64_t holds it
  return bytes >= unlimited ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(bytes);
}

int64_t default_limit() {
  if (const char* env = std::getenv("SALTATORY_MEMORY_LIMIT")) return parse_bytes(env);
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : int64_t{1} << 40;
}

}  // namespace

int64_t memory_limit() {
  const int64_t set = configured.load();
  return set > 0 ? set : default_limit();
}

void set_memory_limit(int64_t bytes) {
  check(bytes >= 0, "set_memory_limit", "limit ", bytes,
        " must be positive (or 0 for the default)");
  configured.store(bytes);
}

void check_memory(double bytes, const char* op, const char* what) {
  const int64_t limit = memory_limit();
  check(bytes <= static_cast<double>(limit), op, what, " needs ", bytes / (1 << 20),
        " MiB, more than the memory limit of ", static_cast<double>(limit) / (1 << 20),
        " MiB (set_memory_limit or SALTATORY_MEMORY_LIMIT)");
}

}  // namespace saltatory
