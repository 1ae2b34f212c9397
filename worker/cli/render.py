"""The text form of each command's answer (`--json` prints the value itself)."""

from __future__ import annotations

import json
from typing import Any

Row = dict[str, Any]


def accounts(listed: Row) -> str:
    return (
        "\n".join(
            f"{r['id']}  {r['org_id']:16} {r['type']:8} {r['status']:12} {r['name']}"
            for r in listed["accounts"]
        )
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


def errors(listed: Row) -> str:
    rows = listed["errors"]
    return (
        "\n".join(
            f"{e['code']:22} x{e['occurrences']:<4} first {e['first_occurred_at']} "
            f"last {e['last_occurred_at']} "
            f"{'resolved ' + e['resolved_at'] if e['resolved_at'] else 'OPEN'}  {e['message']}"
            for e in rows
        )
        or "no errors"
    )


def history(listed: Row) -> str:
    rows = listed["status_history"]
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


def queued(job: Row) -> str:
    return f"queued as job {job['job_id']} (`connections jobs show {job['job_id']}` once it ran)"


def rotated(done: Row) -> str:
    return f"re-encrypted the credentials of {done['reencrypted']} accounts under the newest key"


def stored_job(result: Row) -> str:
    return "\n".join(f"{k}: {v}" for k, v in result.items())


def events(listed: Row) -> str:
    rows = listed["events"]
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


def incidents(listed: Row) -> str:
    rows = listed["incidents"]
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


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if whole >= size:
            return f"{whole // size}{unit} {whole % size // smaller_size}{smaller}"
    return f"{whole // 60}m {whole % 60}s" if whole >= 60 else f"{whole}s"


def backlog(b: Row, what: str) -> str:
    count = f"{b['count']}{'+' if b['capped'] else ''} {what}"
    return count + (f" (oldest {age(b['age_seconds'])})" if b["count"] else "")


def status(s: Row) -> str:
    accounts, inbox, outbox, workers = s["accounts"], s["inbox"], s["outbox"], s["workers"]
    lines = [f"accounts   {accounts['total']} in all"]
    for provider, states in accounts["by_provider"].items():
        lines.append(f"  {provider:9}" + "  ".join(f"{k} {v}" for k, v in states.items()))
    lines.append(f"incidents  {len(s['incidents']) or 'none'} open")
    lines += [
        f"  {i['provider']:9}since {i['started_at']}, {i['failed_checks']} failed checks:"
        f" {i['reason']}"
        for i in s["incidents"]
    ]
    lines.append(
        "inbox      "
        + ", ".join(backlog(inbox[k], k if k != "received" else "waiting") for k in inbox)
    )
    unset = " (not published: CONNECTIONS_EVENTS_REDIS_URL unset)"
    publishing = "" if outbox["publishing"] else unset
    lines.append("outbox     " + backlog(outbox["unpublished"], "unpublished") + publishing)
    if workers["answered"]:
        names = ", ".join(workers["answered"])
        lines.append(f"workers    {len(workers['answered'])} answered: {names}")
    elif workers["problem"]:
        lines.append(f"workers    none answered ({workers['problem']})")
    else:
        lines.append(f"workers    none answered within {workers['timeout_seconds']:g}s")
    return "\n".join(lines)
