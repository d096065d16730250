"""``simtrio compare``: what changed between two runs, and whether it is a regression.

Sub-sessions are matched by slot range (session ids differ between runs), transactions by
signature. A regression is a transaction that succeeded in the baseline and fails in the
experiment, or more incorrect simulations, execution errors, server errors or failed
sub-sessions than the baseline had.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import attrs

from simtrio.cli.ndjson import RunFile, RunFileError, read_run_file
from simtrio.cli.output import json_object, render_table, write_json

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from simtrio.cli.common import Subparsers

__all__ = ["Comparison", "add_parser", "compare_runs", "load_run", "render_comparison"]

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
_CHANGED_SHOWN = 20


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two runs (NDJSON files from --output, or DB:RUN_ID recordings)",
        description="Exit status 1 when the experiment regressed against the baseline.",
    )
    p.add_argument("baseline", metavar="BASELINE")
    p.add_argument("experiment", metavar="EXPERIMENT")
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    p.set_defaults(handler=command)


def _delta(base: Any, exp: Any) -> int | None:
    if isinstance(base, int) and isinstance(exp, int):
        return exp - base
    return None


def _metrics(data: Mapping[str, Any] | None, names: tuple[str, ...]) -> dict[str, Any]:
    data = data or {}
    return {name: data.get(name) for name in names}


@attrs.frozen
class Comparison:
    """The result of :func:`compare_runs`; ``to_json`` is what ``--json`` prints."""

    baseline: str
    experiment: str
    sessions: list[dict[str, Any]]
    totals: dict[str, Any]
    changed: list[dict[str, Any]]
    only_in_baseline: int
    only_in_experiment: int
    regressions: list[str]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "experiment": self.experiment,
            "regression": self.regressed,
            "regressions": list(self.regressions),
            "sessions": self.sessions,
            "totals": self.totals,
            "changed_transactions": self.changed,
            "only_in_baseline": self.only_in_baseline,
            "only_in_experiment": self.only_in_experiment,
        }


def _sessions_by_range(run: RunFile) -> dict[tuple[int, int], dict[str, Any]]:
    sessions = (run.summary or {}).get("sessions")
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for item in cast("list[object]", sessions if isinstance(sessions, list) else []):
        session = json_object(item)
        if session is not None:
            out[(int(session.get("start_slot", -1)), int(session.get("end_slot", -1)))] = session
    return out


def _totals_of(run: RunFile) -> dict[str, Any] | None:
    if run.summary is None:
        return None
    return json_object(run.summary.get("totals"))


def compare_runs(baseline: RunFile, experiment: RunFile) -> Comparison:
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
    total_names = (*_METRICS, "failed_sessions")
    bt = _metrics(_totals_of(baseline), total_names)
    et = _metrics(_totals_of(experiment), total_names)
    totals = {
        "baseline": bt,
        "experiment": et,
        "delta": {name: _delta(bt[name], et[name]) for name in total_names},
    }

    changed: list[dict[str, Any]] = []
    for signature, b_tx in baseline.transactions.items():
        e_tx = experiment.transactions.get(signature)
        if e_tx is None or bool(b_tx.get("success")) == bool(e_tx.get("success")):
            continue
        changed.append(
            {
                "signature": signature,
                "slot": e_tx.get("slot", b_tx.get("slot")),
                "baseline_success": bool(b_tx.get("success")),
                "experiment_success": bool(e_tx.get("success")),
                "experiment_err": e_tx.get("err"),
            }
        )
    changed.sort(key=lambda c: (c["slot"] if isinstance(c["slot"], int) else -1, c["signature"]))
    only_base = len(baseline.transactions.keys() - experiment.transactions.keys())
    only_exp = len(experiment.transactions.keys() - baseline.transactions.keys())

    regressions: list[str] = []
    broke = sum(1 for c in changed if c["baseline_success"] and not c["experiment_success"])
    if broke:
        regressions.append(f"{broke} transaction(s) succeeded in the baseline and fail now")
    for name in _REGRESSING:
        d = totals["delta"][name]
        if d is not None and d > 0:
            regressions.append(f"{name.replace('_', ' ')}: {bt[name]} -> {et[name]} (+{d})")
    if experiment.summary is None and baseline.summary is not None:
        regressions.append("the experiment has no summary (the run did not finish)")
    return Comparison(
        baseline=baseline.source,
        experiment=experiment.source,
        sessions=sessions,
        totals=totals,
        changed=changed,
        only_in_baseline=only_base,
        only_in_experiment=only_exp,
        regressions=regressions,
    )


def _pair(base: Any, exp: Any) -> str:
    if base == exp:
        return "-" if base is None else str(base)
    d = _delta(base, exp)
    text = f"{'-' if base is None else base} -> {'-' if exp is None else exp}"
    return f"{text} ({d:+d})" if d is not None else text


_SHOWN_METRICS = ("slots", "transactions", "correct", "incorrect", "execution_errors", "errors")


def render_comparison(result: Comparison) -> str:
    headers = ("RANGE", "SLOTS", "TXS", "CORRECT", "INCORRECT", "EXEC-ERR", "ERRORS", "STATUS")
    rows: list[list[Any]] = []
    for s in result.sessions:
        b, e = s["baseline"], s["experiment"]
        rows.append(
            [
                f"{s['start_slot']}-{s['end_slot']}",
                *(_pair(b[m], e[m]) for m in _SHOWN_METRICS),
                _pair(b["status"], e["status"]),
            ]
        )
    bt, et = result.totals["baseline"], result.totals["experiment"]
    footer = [["TOTAL", *(_pair(bt[m], et[m]) for m in _SHOWN_METRICS), ""]]
    lines = [
        f"baseline:   {result.baseline}",
        f"experiment: {result.experiment}",
        "",
        render_table(headers, rows, footer=footer),
        "",
    ]
    if result.changed:
        lines.append(f"Transactions whose success changed: {len(result.changed)}")
        for c in result.changed[:_CHANGED_SHOWN]:
            before = "ok" if c["baseline_success"] else "failed"
            after = "ok" if c["experiment_success"] else "failed"
            lines.append(f"  slot {c['slot']}  {c['signature']}  {before} -> {after}")
        if len(result.changed) > _CHANGED_SHOWN:
            lines.append(f"  … {len(result.changed) - _CHANGED_SHOWN} more (see --json)")
    else:
        lines.append("Transactions whose success changed: none")
    if result.only_in_baseline or result.only_in_experiment:
        lines.append(
            f"Transactions only in baseline: {result.only_in_baseline}, "
            f"only in experiment: {result.only_in_experiment}"
        )
    if result.regressions:
        lines.append("REGRESSIONS:")
        lines.extend(f"  {r}" for r in result.regressions)
    else:
        lines.append("No regressions.")
    return "\n".join(lines)


def load_run(reference: str) -> RunFile:
    """An NDJSON file, or ``DB:RUN_ID`` naming a recorded run."""
    path = Path(reference)
    if not path.exists() and ":" in reference:
        from simtrio.cli.recorded import load_recorded_run

        db, _, run_id = reference.rpartition(":")
        return load_recorded_run(Path(db), run_id)
    return read_run_file(path)


def command(args: argparse.Namespace) -> int:
    try:
        baseline = load_run(args.baseline)
        experiment = load_run(args.experiment)
    except RunFileError as exc:
        print(f"simtrio compare: {exc}", file=sys.stderr)
        return 2
    result = compare_runs(baseline, experiment)
    if args.json:
        write_json(sys.stdout, result.to_json())
    else:
        print(render_comparison(result))
    return 1 if result.regressed else 0
