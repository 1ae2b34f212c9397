"""What the retention benchmark prints: each segment, the two sides pooled with their ratio, and
the pruner's rate and batch times."""

from __future__ import annotations

from bench.ingest.results import pct
from bench.retention.pruner import PruneResult
from bench.retention.segments import Segment

# A segment with pruning counts only if the pruner was deleting for this much of it.
FULL = 0.95


def print_segments(segments: list[Segment]) -> None:
    for n, segment in enumerate(segments):
        name = f"#{n} {'pruning' if segment.pruning else 'no pruning'}"
        note = ""
        if segment.pruning and segment.coverage < FULL:
            note = f"   (pruner busy {segment.coverage:.0%} of it: left out)"
        print(
            segment.result.line(name)
            + f"   CPU s: ingest {segment.cpu_ingest:.1f}, PostgreSQL {segment.cpu_postgres:.1f}"
            + note
        )


def pooled(segments: list[Segment]) -> tuple[float, float, float, float, float]:
    """Accepted/s, p50 and p99 (ms) over the segments together, the median of the segments'
    own p99s (one stall of the shared machine weighs less in it), and PostgreSQL CPU/s."""
    ok = sum(s.result.ok for s in segments)
    seconds = sum(s.result.seconds for s in segments) or 1.0
    latencies = [x for s in segments for x in s.result.latencies]
    each_p99 = sorted(s.result.pct(99) for s in segments)
    cpu = sum(s.cpu_postgres for s in segments) / seconds
    return (
        ok / seconds,
        pct(latencies, 50),
        pct(latencies, 99),
        each_p99[len(each_p99) // 2],
        cpu,
    )


def print_comparison(segments: list[Segment]) -> None:
    without = [s for s in segments if not s.pruning]
    with_ = [s for s in segments if s.pruning and s.coverage >= FULL]
    if not without or not with_:
        print("\nnot enough segments on both sides to compare (try --segment-seconds lower)")
        return
    base, pruning = pooled(without), pooled(with_)
    print(
        f"\n{'':26} {'accepted/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'median p99':>11}"
        f" {'PostgreSQL CPU':>15}"
    )
    for name, (rate, p50, p99, median_p99, cpu) in (
        (f"no pruning ({len(without)} segments)", base),
        (f"pruning ({len(with_)} segments)", pruning),
    ):
        print(f"{name:26} {rate:10.0f} {p50:8.1f} {p99:8.1f} {median_p99:11.1f} {cpu:14.0%}")
    print(
        f"ratio pruning/no pruning: accepted/s {pruning[0] / base[0]:.3f}, "
        f"p50 {pruning[1] / base[1]:.2f}x, p99 {pruning[2] / base[2]:.2f}x, "
        f"median p99 {pruning[3] / base[3]:.2f}x"
    )


def print_pruner(pruned: PruneResult | None, rows: int) -> None:
    if pruned is None:
        print("\npruner: not finished within --max-segments")
        return
    batches = sorted(pruned.batches)
    rests = ""
    if pruned.rested:
        overall = pruned.deleted / (pruned.active + pruned.rested)
        rests = f" ({overall:,.0f} rows/s with the pauses between batches)"
    print(
        f"\npruner: {pruned.deleted:,} of {rows:,} rows in {pruned.active:.1f} s of deleting = "
        f"{pruned.deleted / pruned.active:,.0f} rows/s under load{rests}; {len(batches)} "
        f"batches, each its own transaction: p50 {pct(batches, 50):.0f} ms, p99 "
        f"{pct(batches, 99):.0f} ms, max {pct(batches, 100):.0f} ms"
    )
