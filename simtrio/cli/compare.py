"""``simtrio compare BASELINE EXPERIMENT [SECTION]``: what changed between two runs.

Either run may be any format :mod:`simtrio.cli.runfile` reads. Transactions are matched by
signature, sub-sessions by slot range (session ids differ between runs). The sections:

* ``regressions``: transactions that succeeded in the baseline and fail in the experiment;
* ``improvements``: transactions that failed in the baseline and succeed in the experiment;
* ``balances``: per account (and mint), the net SOL / token change that differs;
* ``summary``: the totals side by side, and per sub-session when both runs carry simtrio's
  summary (then also more incorrect simulations, execution errors, server errors or failed
  sub-sessions than the baseline, or an experiment that did not finish, count as regressions).

The exit status is 1 when there is a regression, whichever sections are shown.
"""

from __future__ import annotations

__all__: list[str] = []

import sys
from typing import TYPE_CHECKING, Any, Final, cast

import attrs

from simtrio.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandInfo, add_json_flag
from simtrio.cli.console import render_table
from simtrio.cli.output import json_object, write_json
from simtrio.cli.runfile import RunFile, RunFileError, load_run

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping


SECTIONS = ("regressions", "improvements", "balances", "summary")

_METRICS = (
    "slots",
    "transactions",
    "failed_transactions",
    "account_diffs",
    "correct",
    "incorrect",
    "execution_errors",
    "errors",
)
_REGRESSING = ("incorrect", "execution_errors", "errors", "failed_sessions")
_SHOWN = 20


INFO: Final = CommandInfo(
    name="compare",
    help="compare two runs (sim or simtrio NDJSON, sim's legacy JSON, or DB:RUN_ID)",
    description=(
        "Sections: regressions (success -> failure), improvements (failure -> success), "
        "balances (per-account SOL and token change differences), summary; none given: "
        "all. Exit status 1 when the experiment regressed, 2 when a run cannot be read."
    ),
)
"""The command's name and what ``--help`` says of it."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("baseline", metavar="BASELINE")
    p.add_argument("experiment", metavar="EXPERIMENT")
    p.add_argument("section", metavar="SECTION", nargs="?", choices=SECTIONS)
    add_json_flag(p, "the comparison as one JSON object")


def _delta(base: Any, exp: Any) -> int | None:
    if isinstance(base, int) and isinstance(exp, int):
        return exp - base
    return None


def _metrics(data: Mapping[str, Any] | None, names: tuple[str, ...]) -> dict[str, Any]:
    data = data or {}
    return {name: data.get(name) for name in names}


def net_changes(run: RunFile) -> dict[tuple[str, str | None], int]:
    """Net change per ``(account, mint)`` over the run (``mint`` None: lamports)."""
    out: dict[tuple[str, str | None], int] = {}
    for tx in run.transactions.values():
        for change in tx["sol_changes"]:
            account, amount = change.get("account"), change.get("change")
            if isinstance(account, str) and isinstance(amount, int):
                out[(account, None)] = out.get((account, None), 0) + amount
        for change in tx["token_changes"]:
            account, mint, amount = change.get("account"), change.get("mint"), change.get("change")
            if isinstance(account, str) and isinstance(mint, str) and isinstance(amount, int):
                out[(account, mint)] = out.get((account, mint), 0) + amount
    return out


@attrs.frozen
class Comparison:
    """The result of :func:`compare_runs`; ``to_json`` is what ``--json`` prints."""

    baseline: str
    experiment: str
    regressed_transactions: list[dict[str, Any]]
    improved_transactions: list[dict[str, Any]]
    balances: list[dict[str, Any]]
    totals: dict[str, Any]
    sessions: list[dict[str, Any]]
    summary_regressions: list[str]
    only_in_baseline: int
    only_in_experiment: int

    @property
    def regressions(self) -> list[str]:
        """Every regression, as sentences."""
        out: list[str] = []
        if self.regressed_transactions:
            n = len(self.regressed_transactions)
            out.append(f"{n} transaction(s) succeeded in the baseline and fail now")
        return out + self.summary_regressions

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    def to_json(self, sections: tuple[str, ...] = SECTIONS) -> dict[str, Any]:
        out: dict[str, Any] = {
            "baseline": self.baseline,
            "experiment": self.experiment,
            "regression": self.regressed,
        }
        if "regressions" in sections:
            out["regressions"] = self.regressed_transactions
        if "improvements" in sections:
            out["improvements"] = self.improved_transactions
        if "balances" in sections:
            out["balances"] = self.balances
        if "summary" in sections:
            out["summary"] = {
                "totals": self.totals,
                "sessions": self.sessions,
                "regressions": self.summary_regressions,
                "only_in_baseline": self.only_in_baseline,
                "only_in_experiment": self.only_in_experiment,
            }
        return out


def _sessions_by_range(run: RunFile) -> dict[tuple[int, int], dict[str, Any]]:
    sessions = (run.summary or {}).get("sessions")
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for item in cast("list[object]", sessions if isinstance(sessions, list) else []):
        session = json_object(item)
        if session is not None:
            start, end = session.get("start_slot"), session.get("end_slot")
            if isinstance(start, int) and isinstance(end, int):
                out[(start, end)] = session
    return out


def _simtrio_totals(run: RunFile) -> dict[str, Any] | None:
    return None if run.summary is None else json_object(run.summary.get("totals"))


def _flips(baseline: RunFile, experiment: RunFile, *, was: bool) -> list[dict[str, Any]]:
    """Transactions whose success was ``was`` in the baseline and is not in the experiment."""
    out: list[dict[str, Any]] = []
    for signature, b_tx in baseline.transactions.items():
        e_tx = experiment.transactions.get(signature)
        if e_tx is None or b_tx["success"] is not was or e_tx["success"] is was:
            continue
        slot = e_tx["slot"] if e_tx["slot"] is not None else b_tx["slot"]
        out.append(
            {
                "signature": signature,
                "slot": slot,
                "baseline_error": b_tx["error"],
                "experiment_error": e_tx["error"],
            }
        )
    out.sort(key=lambda c: (c["slot"] if isinstance(c["slot"], int) else -1, c["signature"]))
    return out


def _balances(baseline: RunFile, experiment: RunFile) -> list[dict[str, Any]]:
    base, exp = net_changes(baseline), net_changes(experiment)
    out: list[dict[str, Any]] = []
    for key in sorted(base.keys() | exp.keys(), key=lambda k: (k[0], k[1] or "")):
        b, e = base.get(key, 0), exp.get(key, 0)
        if b != e:
            out.append(
                {
                    "account": key[0],
                    "mint": key[1],
                    "baseline_change": b,
                    "experiment_change": e,
                    "difference": e - b,
                }
            )
    return out


def _session_rows(baseline: RunFile, experiment: RunFile) -> list[dict[str, Any]]:
    base_sessions = _sessions_by_range(baseline)
    exp_sessions = _sessions_by_range(experiment)
    sessions: list[dict[str, Any]] = []
    for key in sorted(base_sessions.keys() | exp_sessions.keys()):
        b = base_sessions.get(key)
        e = exp_sessions.get(key)
        bm = _metrics(b, _METRICS)
        em = _metrics(e, _METRICS)
        sessions.append(
            {
                "start_slot": key[0],
                "end_slot": key[1],
                "baseline": {**bm, "status": b.get("status") if b else None},
                "experiment": {**em, "status": e.get("status") if e else None},
                "delta": {name: _delta(bm[name], em[name]) for name in _METRICS},
            }
        )
    return sessions


def compare_runs(baseline: RunFile, experiment: RunFile) -> Comparison:
    bt, et = baseline.totals(), experiment.totals()
    names = ("total", "successes", "failures")
    totals: dict[str, Any] = {
        "baseline": dict(bt),
        "experiment": dict(et),
        "delta": {n: _delta(bt[n], et[n]) for n in names},
    }
    summary_regressions: list[str] = []
    b_simtrio, e_simtrio = _simtrio_totals(baseline), _simtrio_totals(experiment)
    if b_simtrio is not None and e_simtrio is not None:
        extra = (*_METRICS, "failed_sessions")
        bx, ex = _metrics(b_simtrio, extra), _metrics(e_simtrio, extra)
        totals["baseline"].update(bx)
        totals["experiment"].update(ex)
        totals["delta"].update({n: _delta(bx[n], ex[n]) for n in extra})
        for name in _REGRESSING:
            d = totals["delta"][name]
            if d is not None and d > 0:
                summary_regressions.append(
                    f"{name.replace('_', ' ')}: {bx[name]} -> {ex[name]} (+{d})"
                )
    if baseline.finished and not experiment.finished:
        summary_regressions.append("the experiment has no summary (the run did not finish)")
    return Comparison(
        baseline=baseline.source,
        experiment=experiment.source,
        regressed_transactions=_flips(baseline, experiment, was=True),
        improved_transactions=_flips(baseline, experiment, was=False),
        balances=_balances(baseline, experiment),
        totals=totals,
        sessions=_session_rows(baseline, experiment),
        summary_regressions=summary_regressions,
        only_in_baseline=len(baseline.transactions.keys() - experiment.transactions.keys()),
        only_in_experiment=len(experiment.transactions.keys() - baseline.transactions.keys()),
    )


def _pair(base: Any, exp: Any) -> str:
    if base == exp:
        return "-" if base is None else str(base)
    d = _delta(base, exp)
    text = f"{'-' if base is None else base} -> {'-' if exp is None else exp}"
    return f"{text} ({d:+d})" if d is not None else text


_SESSION_METRICS = ("slots", "transactions", "correct", "incorrect", "execution_errors", "errors")


def _flip_lines(title: str, flips: list[dict[str, Any]], key: str) -> list[str]:
    lines = [f"{title}: {len(flips) or 'none'}"]
    for c in flips[:_SHOWN]:
        error = c[key]
        lines.append(f"  slot {c['slot']}  {c['signature']}" + (f"  {error}" if error else ""))
    if len(flips) > _SHOWN:
        lines.append(f"  … {len(flips) - _SHOWN} more (see --json)")
    return lines


def _balance_lines(result: Comparison) -> list[str]:
    if not result.balances:
        return ["Balance changes that differ: none"]
    rows = [
        [b["account"], b["mint"] or "SOL", b["baseline_change"], b["experiment_change"],
         b["difference"]]
        for b in result.balances[:_SHOWN]
    ]  # fmt: skip
    lines = [
        f"Balance changes that differ: {len(result.balances)}",
        render_table(("ACCOUNT", "MINT", "BASELINE", "EXPERIMENT", "DIFFERENCE"), rows),
    ]
    if len(result.balances) > _SHOWN:
        lines.append(f"… {len(result.balances) - _SHOWN} more (see --json)")
    return lines


def _summary_lines(result: Comparison) -> list[str]:
    bt, et = result.totals["baseline"], result.totals["experiment"]
    rows = [[name, _pair(bt.get(name), et.get(name))] for name in bt]
    lines = ["Summary:", render_table(("TOTAL", "BASELINE -> EXPERIMENT"), rows)]
    if result.sessions:
        headers = ("RANGE", "SLOTS", "TXS", "CORRECT", "INCORRECT", "EXEC-ERR", "ERRORS", "STATUS")
        session_rows: list[list[Any]] = []
        for s in result.sessions:
            b, e = s["baseline"], s["experiment"]
            session_rows.append(
                [
                    f"{s['start_slot']}-{s['end_slot']}",
                    *(_pair(b[m], e[m]) for m in _SESSION_METRICS),
                    _pair(b["status"], e["status"]),
                ]
            )
        lines += ["", render_table(headers, session_rows)]
    if result.only_in_baseline or result.only_in_experiment:
        lines.append(
            f"Transactions only in the baseline: {result.only_in_baseline}, "
            f"only in the experiment: {result.only_in_experiment}"
        )
    return lines


def render_comparison(result: Comparison, sections: tuple[str, ...] = SECTIONS) -> str:
    lines = [f"baseline:   {result.baseline}", f"experiment: {result.experiment}"]
    if "regressions" in sections:
        lines += ["", *_flip_lines("Regressions (success -> failure)",
                                   result.regressed_transactions, "experiment_error")]  # fmt: skip
    if "improvements" in sections:
        lines += ["", *_flip_lines("Improvements (failure -> success)",
                                   result.improved_transactions, "baseline_error")]  # fmt: skip
    if "balances" in sections:
        lines += ["", *_balance_lines(result)]
    if "summary" in sections:
        lines += ["", *_summary_lines(result)]
    lines.append("")
    if result.regressions:
        lines.append("REGRESSIONS:")
        lines.extend(f"  {r}" for r in result.regressions)
    else:
        lines.append("No regressions.")
    return "\n".join(lines)


def _warn_skipped(run: RunFile) -> None:
    if run.skipped:
        print(
            f"simtrio: warning: {run.source}: skipped {run.skipped} record(s) of unknown type",
            file=sys.stderr,
        )


def command(args: argparse.Namespace) -> int:
    try:
        baseline = load_run(args.baseline)
        experiment = load_run(args.experiment)
    except RunFileError as exc:
        print(f"simtrio compare: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _warn_skipped(baseline)
    _warn_skipped(experiment)
    sections: tuple[str, ...] = SECTIONS if args.section is None else (args.section,)
    result = compare_runs(baseline, experiment)
    if args.json:
        write_json(sys.stdout, result.to_json(sections))
    else:
        print(render_comparison(result, sections))
    return EXIT_FAILED if result.regressed else EXIT_OK
