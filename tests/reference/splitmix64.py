"""The random number generator of src/core/rng.c, re-implemented from its description in
docs/methods.md ("Randomness"), for the reference generators and the tests."""
import math

MASK = (1 << 64) - 1


class SplitMix64:
    """The generator of src/core/rng.c, as docs/methods.md describes it."""

    def __init__(self, seed, a, b):
        self.state = seed & MASK
        mix = (self.next() + a * 0x9E3779B97F4A7C15) & MASK  # draw, then XOR into the advanced state
        self.state ^= mix
        mix = (self.next() + b * 0xBF58476D1CE4E5B9) & MASK
        self.state ^= mix

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next() >> 11) * (1.0 / 9007199254740992.0)

    def normal(self):
        u1 = 1.0 - self.uniform()
        u2 = self.uniform()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
