// equilab — a small seeded random number generator, identical on every platform.
//
// std::normal_distribution differs between standard libraries, so results would not reproduce across machines;
// this one is xoshiro256** seeded through splitmix64, with Box–Muller normals.
#pragma once
#include <cstdint>

namespace eq {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { reseed(seed); }
  void reseed(uint64_t seed);
  uint64_t next_u64();
  float uniform();                      // [0, 1)
  float uniform(float lo, float hi);    // [lo, hi)
  float normal();                       // N(0, 1)
  int64_t randint(int64_t n);           // uniform in [0, n)
  bool bernoulli(float p) { return uniform() < p; }

 private:
  uint64_t s_[4];
  bool has_spare_ = false;
  float spare_ = 0;
};

}  // namespace eq
