// Memory limit per request: an op whose working memory would exceed it fails before allocating.
#pragma once

#include <cstdint>

namespace saltatory {

/// The limit in bytes. Default: SALTATORY_MEMORY_LIMIT (bytes, or with a K/M/G/T suffix) if set,
/// else the machine's physical memory.
int64_t memory_limit();
/// Sets the limit (bytes > 0); 0 restores the default.
void set_memory_limit(int64_t bytes);
/// Throws Error(op, ...) naming `what` and both sizes unless `bytes` fits the limit. `bytes` is a
/// double so that products of large sizes cannot overflow before they are checked.
void check_memory(double bytes, const char* op, const char* what);

}  // namespace saltatory
