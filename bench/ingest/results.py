"""What a load run measured, and how it is printed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LoadResult:
    ok: int
    statuses: dict[int, int]
    seconds: float
    latencies: list[float]
    sent_at: dict[str, float]
    # From wrk, which reports percentiles (ms), not each latency.
    percentiles: dict[float, float] | None = None

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if self.percentiles is not None:
            return self.percentiles[p]
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    def line(self, name: str) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"{name:24} {self.rate:8.0f}/s   p50 {self.pct(50):6.1f} ms   p99 "
            f"{self.pct(99):6.1f} ms   max {self.pct(100):7.1f} ms   [{codes}]"
        )


def pct(values: list[float], p: float) -> float:
    """The `p`th percentile of latencies in seconds, in milliseconds (0 for none)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered else 0.0


def print_medians(runs: dict[str, list[tuple[LoadResult, float, float]]]) -> None:
    medians = {n: sorted(r[0].rate for r in rs)[len(rs) // 2] for n, rs in runs.items()}
    print("\nmedian accepted/s: " + ", ".join(f"{n} {v:.0f}" for n, v in medians.items()))
    ours, noop = medians["ours (inbox)"], medians["no-op (ceiling)"]
    print(
        f"ratios: ours/no-op {ours / noop:.2f}, "
        f"ours/textbook {ours / medians['textbook (delay)']:.2f}, "
        f"ours/no group commit {ours / medians['ours, no group commit']:.2f}\n"
    )
