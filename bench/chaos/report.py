"""One row per scenario: the load's figures, the drain and recovery times, restarts, and PASS or
FAIL with every invariant that failed."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.chaos.webhooks import Webhooks

COLUMNS = (
    ("scenario", 18),
    ("sent", 6),
    ("accepted", 8),
    ("503s", 5),
    ("processed once", 14),
    ("duplicates", 10),
    ("lost", 5),
    ("drain s", 7),
    ("recover s", 9),
    ("restarts", 8),
    ("result", 6),
)


@dataclass
class Row:
    name: str
    sent: int = 0
    accepted: int = 0
    unavailable: int = 0  # 503 answers
    once: int = 0
    duplicates: int = 0
    lost: int = 0
    drain: float | None = None
    recover: float | None = None
    restarts: int = 0
    seconds: float = 0.0
    other: dict[int, int] = field(default_factory=dict)  # answers other than 200 and 503
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def fill_load(self, webhooks: Webhooks, sent: int) -> None:
        statuses = webhooks.statuses()
        self.sent = sent
        self.accepted = len(webhooks.accepted_ids())
        self.unavailable = statuses.get(503, 0)
        self.duplicates = webhooks.said("duplicate")
        self.other = {code: n for code, n in statuses.items() if code not in (200, 503)}

    def cells(self) -> list[str]:
        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{max(0.0, value):.1f}"

        return [
            self.name,
            str(self.sent),
            str(self.accepted),
            str(self.unavailable),
            f"{self.once}/{self.accepted}",
            str(self.duplicates),
            str(self.lost),
            seconds(self.drain),
            seconds(self.recover),
            str(self.restarts),
            "PASS" if self.passed else "FAIL",
        ]

    def details(self) -> list[str]:
        lines = [f"  {self.name}: {self.seconds:.0f} s"]
        if self.other:
            lines.append(f"    other answers (0 = no answer): {dict(sorted(self.other.items()))}")
        lines += [f"    {note}" for note in self.notes]
        lines += [f"    FAILED: {failure}" for failure in self.failures]
        return lines


def header() -> str:
    return "  ".join(name.ljust(width) for name, width in COLUMNS)


def line(row: Row) -> str:
    return "  ".join(
        cell.ljust(width) for cell, (_, width) in zip(row.cells(), COLUMNS, strict=True)
    )


def table(rows: list[Row]) -> str:
    out = [header(), "-" * len(header())]
    out += [line(row) for row in rows]
    out.append("")
    for row in rows:
        out += row.details()
    return "\n".join(out)


def markdown(rows: list[Row]) -> str:
    """The same rows as a Markdown table, for docs/reliability.md."""
    out = ["| " + " | ".join(name for name, _ in COLUMNS) + " |"]
    out.append("|" + "---|" * len(COLUMNS))
    for row in rows:
        out.append("| " + " | ".join(row.cells()) + " |")
    return "\n".join(out)
