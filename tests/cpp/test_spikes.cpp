// SpikeTensor: conversions, validation and overflow accounting.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "saltatory/core/error.hpp"
#include "saltatory/core/spikes.hpp"

using saltatory::Error;
using saltatory::OverflowPolicy;
using saltatory::SpikeTensor;

TEST(SpikeTensor, DenseRoundTrip) {
  const int T = 2, B = 2, N = 5;
  const std::vector<float> dense{1, 0, 0, 1, 0, 0, 0, 0, 0, 0,  //
                                 1, 1, 1, 1, 1, 0, 1, 0, 1, 0};
  const SpikeTensor s = SpikeTensor::from_dense(dense.data(), T, B, N, 5);
  EXPECT_EQ(s.dropped(), 0);
  EXPECT_EQ(s.total_spikes(), 9);
  EXPECT_EQ(s.to_dense(), dense);
  EXPECT_EQ(s.view().spikes(0, 1), 0);
  EXPECT_EQ(s.view().list(1, 1)[1], 3);
}

TEST(SpikeTensor, OverflowKeepsLowestIdsAndCountsDrops) {
  const std::vector<float> dense{1, 1, 1, 1, 1, 0, 1, 0};
  const SpikeTensor s = SpikeTensor::from_dense(dense.data(), 1, 1, 8, 3);
  EXPECT_EQ(s.dropped(), 3);
  EXPECT_EQ(std::vector<int32_t>(s.view().list(0, 0), s.view().list(0, 0) + 3),
            (std::vector<int32_t>{0, 1, 2}));
  const SpikeTensor r =
      SpikeTensor::from_dense(dense.data(), 1, 1, 8, 3, OverflowPolicy::random, 9);
  EXPECT_EQ(r.dropped(), 3);
  EXPECT_EQ(r.view().spikes(0, 0), 3);
}

TEST(SpikeTensor, RejectsNonBinaryDense) {
  const std::vector<float> dense{1, 0.5f};
  EXPECT_THROW(SpikeTensor::from_dense(dense.data(), 1, 1, 2, 2), Error);
}

TEST(SpikeTensor, EventsAreBinnedDeduplicatedAndLateEventsCounted) {
  const std::vector<int64_t> sample{0, 0, 1, 0, 1};
  const std::vector<double> time{0.5, 0.9, 1.0, 2.5, 3.0};  // bin width 1, T = 3: 3.0 is late
  const std::vector<int64_t> unit{4, 4, 2, 1, 0};
  const SpikeTensor s =
      SpikeTensor::from_events(sample.data(), time.data(), unit.data(), 5, 1.0, 3, 2, 6, 4);
  EXPECT_EQ(s.dropped(), 1);
  EXPECT_EQ(s.view().spikes(0, 0), 1);  // the two events of unit 4 in bin 0 make one spike
  EXPECT_EQ(s.view().list(0, 0)[0], 4);
  EXPECT_EQ(s.view().spikes(1, 1), 1);
  EXPECT_EQ(s.view().list(1, 1)[0], 2);
  EXPECT_EQ(s.view().list(2, 0)[0], 1);
  EXPECT_EQ(s.total_spikes(), 3);
}

TEST(SpikeTensor, EventsRejectBadInput) {
  const std::vector<int64_t> sample{0}, unit{9};
  const std::vector<double> time{0.0};
  EXPECT_THROW(
      SpikeTensor::from_events(sample.data(), time.data(), unit.data(), 1, 1.0, 2, 1, 4, 2), Error);
  const std::vector<int64_t> ok_unit{1};
  const std::vector<double> nan_time{std::nan("")};
  EXPECT_THROW(
      SpikeTensor::from_events(sample.data(), nan_time.data(), ok_unit.data(), 1, 1.0, 2, 1, 4, 2),
      Error);
  EXPECT_THROW(
      SpikeTensor::from_events(sample.data(), time.data(), ok_unit.data(), 1, 0.0, 2, 1, 4, 2),
      Error);
}

TEST(SpikeTensor, ValidationNamesTheProblem) {
  SpikeTensor s(1, 1, 3, 4);
  s.list(0, 0)[0] = 2;
  s.list(0, 0)[1] = 2;
  s.n_spk(0, 0) = 2;
  s.n_tot(0, 0) = 2;
  try {
    saltatory::validate(s.view(), "my_op");
    FAIL() << "duplicate ids accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[my_op] id 2 appears twice"), std::string::npos)
        << e.what();
  }
  s.list(0, 0)[1] = 4;
  EXPECT_THROW(saltatory::validate(s.view(), "op"), Error);  // out of range
  s.list(0, 0)[1] = 1;
  s.n_tot(0, 0) = 1;  // n_spk > n_tot
  EXPECT_THROW(saltatory::validate(s.view(), "op"), Error);
  s.n_tot(0, 0) = 4;  // n_tot > K
  EXPECT_THROW(saltatory::validate(s.view(), "op"), Error);
  EXPECT_THROW(SpikeTensor(0, 1, 1, 1), Error);
}
