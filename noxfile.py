"""Developer tasks: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``, ``bench``, ``chaos``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.11", "3.12", "3.13"]


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The whole test suite, in the current interpreter."""
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def tests_all(session: nox.Session) -> None:
    """The suite on every supported Python that is installed."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.8")
    session.run("ruff", "check", "simtrio", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "simtrio", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[typecheck]")
    session.run("mypy", "simtrio")
    session.run("pyright", "simtrio")


@nox.session
def docs(session: nox.Session) -> None:
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput and latency against in-run floors; ``-- --quick`` for a smoke run."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """The long seeded fault-injection run (new seeds each time)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.managed.chaos", *session.posargs)
