"""The text form of each command's answer (`--json` prints the value itself)."""

from __future__ import annotations

import json
from typing import Any

Row = dict[str, Any]


def accounts(rows: list[Row]) -> str:
    return (
        "\n".join(f"{r['id']}  {r['type']:8} {r['status']:12} {r['name']}" for r in rows)
        or "no accounts"
    )


def details(d: Row) -> str:
    lines = [
        f"{d['name']} ({d['type']}) {d['id']}",
        f"  org: {d['org_id']}   status: {d['status']}   last checked: {d['last_checked_at']}",
        f"  connection: {json.dumps(d['connection'])}",
        f"  metadata: {json.dumps(d['metadata'])}",
        "  integrations: "
        + (", ".join(f"{i['name']} ({i['id']})" for i in d["integrations"]) or "none"),
        "  errors:",
        *[
            f"    {e['code']} x{e['occurrences']} {'open' if not e['resolved_at'] else 'resolved'}:"
            f" {e['message']}"
            for e in d["errors"]
        ],
        "  status history:",
        *[
            f"    {c['occurred_at']} {c['from']} -> {c['to']} ({c['source']}): {c['reason']}"
            for c in d["status_history"]
        ],
    ]
    return "\n".join(lines)


def errors(rows: list[Row]) -> str:
    return (
        "\n".join(
            f"{e['code']:22} x{e['occurrences']:<4} first {e['first_occurred_at']} "
            f"last {e['last_occurred_at']} "
            f"{'resolved ' + e['resolved_at'] if e['resolved_at'] else 'OPEN'}  {e['message']}"
            for e in rows
        )
        or "no errors"
    )


def history(rows: list[Row]) -> str:
    return (
        "\n".join(
            f"{c['occurred_at']}  {c['from'] or '-':12} -> {c['to']:12} "
            f"[{c['source']}] {c['reason']}"
            for c in rows
        )
        or "no status changes"
    )


def job_result(result: Row) -> str:
    return f"{result['status']}: {result['message']}"


def stored_job(result: Row) -> str:
    return "\n".join(f"{k}: {v}" for k, v in result.items())


def events(rows: list[Row]) -> str:
    return (
        "\n".join(
            f"{r['id']}  {r['provider']:8} {r['status']:10} {r['topic']:32} "
            f"{r['route_key'] or '-'}  attempts {r['attempts']}"
            + (f"  {r['last_error']}" if r["last_error"] else "")
            for r in rows
        )
        or "no events"
    )


def replayed(v: Row) -> str:
    return f"{v['id']} is received again; " + (
        "queued for processing" if v["queued"] else "the sweeper will queue it"
    )


def incidents(rows: list[Row]) -> str:
    return (
        "\n".join(
            f"{r['id']}  {r['provider']:8} {'OPEN' if r['ended_at'] is None else 'ended':6}"
            f" started {r['started_at']}"
            f"{' ended ' + r['ended_at'] if r['ended_at'] else ''}"
            f"  failed checks {r['failed_checks']}  {r['reason']}"
            for r in rows
        )
        or "no incidents"
    )
