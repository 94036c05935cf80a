// A layer's spike lists over steps [-1, T) of a call that may continue a sequence: this call's
// lists and, at step -1, the last step's spikes held by its initial state (StackState). Step t of a
// layer reads its own spikes of t - 1 (recurrence, spike reset, adaptation) and, with delayed
// coupling, the layer below's of t - 1; at t = 0 those are the initial state's, or none from rest.
#pragma once

#include "saltatory/core/spikes.hpp"

namespace saltatory::common {

/// Spike lists of steps [0, now.T) and, when `before.T` is 1, of step -1.
struct SpikeHistory {
  SpikeView now;
  SpikeView before;  ///< T = 1: the initial state's spikes; T = 0: the call starts from rest

  /// Whether step t has lists (t >= 0, or t = -1 with an initial state).
  bool has(int t) const { return t >= 0 || (t == -1 && before.T > 0); }
  /// The list (t, b), for a step that `has`.
  const int32_t* list(int t, int b) const { return t >= 0 ? now.list(t, b) : before.list(0, b); }
  /// The spikes of list (t, b), 0 for a step before the history.
  int spikes(int t, int b) const {
    return t >= 0 ? now.spikes(t, b) : (has(t) ? before.spikes(0, b) : 0);
  }
};

}  // namespace saltatory::common
