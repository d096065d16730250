"""Per-(sub-)session tallies of a run and the summary built from them.

The tallies are filled by the drivers as events arrive and read by the progress bar, the NDJSON
writer and the final summary, so they are plain mutable objects (one per sub-session; only
its own driver task writes to it). Notifications are counted once per signature (or per
signature and account for diffs): a transaction that involves two subscribed programs is
notified twice, and a reconnect replays its boundary slot again (protocol §9.7).
"""

from __future__ import annotations

__all__: list[str] = []

import enum
from typing import TYPE_CHECKING, Any

import attrs

from simtrio.cli.agents import render_agents
from simtrio.cli.console import render_table
from simtrio.cli.output import format_duration
from simtrio.wire.jsontext import JsonValue
from simtrio.wire.transaction import transaction_outcome
from simtrio.wire.types import SessionSummary

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


class SessionState(enum.StrEnum):
    """Where a (sub-)session of a run stands; the value is the lower-case name, as printed."""

    RUNNING = enum.auto()
    COMPLETED = enum.auto()
    FAILED = enum.auto()
    INTERRUPTED = enum.auto()


@attrs.frozen
class TxFacts:
    """What the CLI keeps of a transaction notification."""

    signature: str | None
    success: bool
    err: JsonValue


def tx_facts(payload: JsonValue) -> TxFacts:
    """Signature and outcome from a ``getTransaction``-shaped payload (protocol §9.4)."""
    signature, err = transaction_outcome(payload)
    return TxFacts(signature=signature, success=err is None, err=err)


_SUMMARY_FIELDS = (
    "correct_simulation",
    "incorrect_simulation",
    "execution_errors",
    "balance_diff",
    "log_diff",
)


@attrs.define
class SessionTally:
    """Running counters of one (sub-)session."""

    session_id: str
    start_slot: int
    end_slot: int
    started_at: float
    state: SessionState = SessionState.RUNNING
    last_slot: int | None = None
    completed: bool = False
    summary: SessionSummary | None = None
    errors: int = 0
    error_messages: list[str] = attrs.field(factory=list[str])
    failure: str | None = None
    finished_at: float | None = None
    tx_signatures: set[str] = attrs.field(factory=set[str])
    tx_failed: int = 0
    tx_unsigned: int = 0
    diff_keys: set[tuple[str | None, str | None, int]] = attrs.field(
        factory=set[tuple[str | None, str | None, int]]
    )
    log_keys: set[tuple[str, str]] = attrs.field(factory=set[tuple[str, str]])
    agent_pnl: list[dict[str, Any]] | None = None
    """Balance changes of the agents' wallets (``simtrio.cli.agents.agent_pnl``)."""
    agent_stats: list[dict[str, Any]] | None = None
    """``AgentStatsReport`` values of ``completed``, as JSON objects."""
    agent_error: str | None = None
    """Why the agents' balances could not be read (the session itself may have completed)."""

    @property
    def total_slots(self) -> int:
        return self.end_slot - self.start_slot + 1

    @property
    def slots_done(self) -> int:
        """Executed slots: a ``slotNotification(s)`` means every slot before ``s`` ran."""
        if self.completed:
            return self.total_slots
        if self.last_slot is None:
            return 0
        return max(0, min(self.last_slot - self.start_slot, self.total_slots))

    @property
    def transactions(self) -> int:
        """Distinct transactions notified on the data plane."""
        return len(self.tx_signatures) + self.tx_unsigned

    @property
    def account_diffs(self) -> int:
        return len(self.diff_keys)

    def on_slot(self, slot: int) -> None:
        if self.last_slot is None or slot > self.last_slot:
            self.last_slot = slot

    def on_transaction(self, facts: TxFacts) -> bool:
        """Count a notification; False when it repeats one already counted."""
        if facts.signature is None:
            self.tx_unsigned += 1
        elif facts.signature in self.tx_signatures:
            return False
        else:
            self.tx_signatures.add(facts.signature)
        if not facts.success:
            self.tx_failed += 1
        return True

    def on_account_diff(self, account: str | None, signature: str | None, slot: int) -> bool:
        key = (signature, account, slot)
        if key in self.diff_keys:
            return False
        self.diff_keys.add(key)
        return True

    def on_program_logs(self, signature: str, program_id: str) -> bool:
        """Count a logs notification; False when it repeats one already counted."""
        key = (signature, program_id)
        if key in self.log_keys:
            return False
        self.log_keys.add(key)
        return True

    def on_error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_messages) < 5:
            self.error_messages.append(message)

    def complete(self, summary: SessionSummary | None, now: float) -> None:
        self.completed = True
        self.summary = summary
        self.state = SessionState.COMPLETED
        self.finished_at = now

    def fail(self, message: str, now: float) -> None:
        if self.state is SessionState.RUNNING:
            self.state = SessionState.FAILED
            self.failure = message
            self.finished_at = now

    def interrupt(self, now: float) -> None:
        if self.state is SessionState.RUNNING:
            self.state = SessionState.INTERRUPTED
            self.finished_at = now

    def wall_time(self, now: float) -> float:
        end = self.finished_at if self.finished_at is not None else now
        return max(0.0, end - self.started_at)

    def summary_value(self, name: str) -> int | None:
        return None if self.summary is None else int(getattr(self.summary, name))

    def to_json(self, now: float) -> dict[str, Any]:
        summary = (
            None
            if self.summary is None
            else {name: self.summary_value(name) for name in _SUMMARY_FIELDS}
        )
        return {
            "session_id": self.session_id,
            "start_slot": self.start_slot,
            "end_slot": self.end_slot,
            "status": self.state.value,
            "slots": self.slots_done,
            "total_slots": self.total_slots,
            "transactions": self.transactions,
            "failed_transactions": self.tx_failed,
            "account_diffs": self.account_diffs,
            "logs": len(self.log_keys),
            "summary": summary,
            "summary_transactions": None if self.summary is None else _summary_total(summary),
            "correct": self.summary_value("correct_simulation"),
            "incorrect": self.summary_value("incorrect_simulation"),
            "execution_errors": self.summary_value("execution_errors"),
            "errors": self.errors,
            "error_messages": list(self.error_messages),
            "failure": self.failure,
            "wall_time": round(self.wall_time(now), 6),
        }


def _summary_total(summary: Mapping[str, int | None] | None) -> int | None:
    if summary is None:
        return None
    return (summary["correct_simulation"] or 0) + (summary["incorrect_simulation"] or 0)


def _sum(values: Sequence[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


@attrs.define
class RunReport:
    """Everything a run prints at the end; ``error`` is a failure outside any sub-session."""

    url: str
    parallel: bool
    start_slot: int
    end_slot: int
    started_at: float
    sessions: list[SessionTally] = attrs.field(factory=list[SessionTally])
    error: str | None = None
    interrupted: bool = False
    finished_at: float | None = None
    run_id: str | None = None
    subscriptions: tuple[str, ...] | None = None
    """Subscribed kinds (``transactions``, ``account-diffs``); None: unknown, show all."""
    agents: bool = False
    """The create request had agents: the summary carries their PnL and stats."""

    @property
    def failed(self) -> bool:
        return self.error is not None or any(s.state is SessionState.FAILED for s in self.sessions)

    @property
    def status(self) -> str:
        if self.interrupted:
            return "interrupted"
        if self.failed:
            return "failed"
        return "completed"

    def totals(self, now: float) -> dict[str, Any]:
        rows = [s.to_json(now) for s in self.sessions]
        end = self.finished_at if self.finished_at is not None else now
        totals: dict[str, Any] = {
            "sessions": len(rows),
            "failed_sessions": sum(1 for r in rows if r["status"] == SessionState.FAILED),
            "slots": sum(r["slots"] for r in rows),
            "total_slots": self.end_slot - self.start_slot + 1,
            "transactions": sum(r["transactions"] for r in rows),
            "failed_transactions": sum(r["failed_transactions"] for r in rows),
            "account_diffs": sum(r["account_diffs"] for r in rows),
            "logs": sum(r["logs"] for r in rows),
            "summary_transactions": _sum([r["summary_transactions"] for r in rows]),
            "errors": sum(r["errors"] for r in rows),
            "wall_time": round(max(0.0, end - self.started_at), 6),
        }
        for name in _SUMMARY_FIELDS:
            totals[name] = _sum([s.summary_value(name) for s in self.sessions])
        totals["correct"] = totals["correct_simulation"]
        totals["incorrect"] = totals["incorrect_simulation"]
        return totals

    def _untracked(self) -> tuple[str, ...]:
        """Counters that mean nothing because their notifications were not subscribed to."""
        if self.subscriptions is None:
            return ()
        fields: list[str] = []
        if "transactions" not in self.subscriptions:
            fields += ["transactions", "failed_transactions"]
        if "account-diffs" not in self.subscriptions:
            fields.append("account_diffs")
        if "logs" not in self.subscriptions:
            fields.append("logs")
        return tuple(fields)

    def to_json(self, now: float) -> dict[str, Any]:
        """The summary; counters of unsubscribed notifications are null rather than 0."""
        sessions = [s.to_json(now) for s in self.sessions]
        totals = self.totals(now)
        for name in self._untracked():
            totals[name] = None
            for session in sessions:
                session[name] = None
        out: dict[str, Any] = {
            "type": "summary",
            "status": self.status,
            "ok": not self.failed and not self.interrupted,
            "url": self.url,
            "parallel": self.parallel,
            "start_slot": self.start_slot,
            "end_slot": self.end_slot,
            "error": self.error,
            "subscriptions": None if self.subscriptions is None else list(self.subscriptions),
            "sessions": sessions,
            "totals": totals,
        }
        if self.run_id is not None:
            out["run_id"] = self.run_id
        if self.agents:
            out["agents"] = [
                {"session_id": s.session_id, **row}
                for s in self.sessions
                for row in s.agent_pnl or ()
            ]
            out["agent_stats"] = [
                {"session_id": s.session_id, **row}
                for s in self.sessions
                for row in s.agent_stats or ()
            ]
            out["agent_errors"] = [
                {"session_id": s.session_id, "error": s.agent_error}
                for s in self.sessions
                if s.agent_error is not None
            ]
        return out


_HEADERS = (
    "SESSION",
    "RANGE",
    "SLOTS",
    "TXS",
    "TX-FAILED",
    "DIFFS",
    "CORRECT",
    "INCORRECT",
    "EXEC-ERR",
    "ERRORS",
    "TIME",
    "STATUS",
)


def _row(name: str, data: Mapping[str, Any], range_text: str, status: str) -> list[Any]:
    return [
        name,
        range_text,
        f"{data['slots']}/{data['total_slots']}",
        data["transactions"],
        data["failed_transactions"],
        data["account_diffs"],
        data["correct"],
        data["incorrect"],
        data["execution_errors"],
        data["errors"],
        format_duration(data["wall_time"]),
        status,
    ]


def _count(value: Any) -> str:
    return "-" if value is None else str(value)


def _overview(report: Mapping[str, Any]) -> list[str]:
    """The run in a few ``name  value`` lines, however many sub-sessions it had."""
    totals = report["totals"]
    sessions = report["sessions"]
    states: dict[str, int] = {}
    for s in sessions:
        states[s["status"]] = states.get(s["status"], 0) + 1
    noun = "sub-session" if report["parallel"] else "session"
    split = ", ".join(f"{n} {state}" for state, n in states.items())
    span = report["end_slot"] - report["start_slot"] + 1
    txs = _count(totals["transactions"])
    if totals["failed_transactions"] is not None:
        txs += f" ({totals['failed_transactions']} failed)"
    pairs = [
        ("status", report["status"]),
        ("range", f"{report['start_slot']}-{report['end_slot']} ({span} slots)"),
        ("sessions", f"{len(sessions)} {noun}{'' if len(sessions) == 1 else 's'}"
         + (f": {split}" if split else "")),
        ("slots run", f"{totals['slots']}/{totals['total_slots']}"),
        ("transactions", txs),
        ("account diffs", _count(totals["account_diffs"])),
        ("program logs", _count(totals.get("logs"))),
        ("correct", _count(totals["correct"])),
        ("incorrect", _count(totals["incorrect"])),
        ("exec errors", _count(totals["execution_errors"])),
        ("server errors", _count(totals["errors"])),
        ("time", format_duration(totals["wall_time"])),
    ]  # fmt: skip
    if report.get("run_id"):
        pairs.append(("recorded as", report["run_id"]))
    width = max(len(name) for name, _ in pairs)
    return [f"{name.ljust(width)}  {value}" for name, value in pairs]


def render_summary(report: Mapping[str, Any], *, detailed: bool = False) -> str:
    """The human-readable summary of :meth:`RunReport.to_json` output.

    A few lines about the whole run; ``detailed`` adds one table row per sub-session.
    """
    lines = _overview(report)
    if detailed and report["sessions"]:
        rows = [
            _row(s["session_id"], s, f"{s['start_slot']}-{s['end_slot']}", s["status"])
            for s in report["sessions"]
        ]
        total_range = f"{report['start_slot']}-{report['end_slot']}"
        footer = [_row("TOTAL", report["totals"], total_range, report["status"])]
        lines += ["", render_table(_HEADERS, rows, footer=footer)]
        if any(s["summary"] is None and s["status"] == "completed" for s in report["sessions"]):
            lines.append("('-': no summary from the server for that session)")
    problems = [s for s in report["sessions"] if s["failure"] or s["error_messages"]]
    if report["error"] or problems:
        lines.append("")
        lines.append("Failures:")
        if report["error"]:
            lines.append(f"  run: {report['error']}")
        for s in problems:
            if s["failure"]:
                lines.append(
                    f"  {s['session_id']} ({s['start_slot']}-{s['end_slot']}): {s['failure']}"
                )
            for message in s["error_messages"]:
                lines.append(f"  {s['session_id']}: server error: {message}")
    lines += render_agents(report)
    return "\n".join(lines)
