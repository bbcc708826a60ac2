"""A row of the report, and the outcome check an intake row gets."""

from __future__ import annotations

from dataclasses import dataclass

from bench.load import WrkResult


@dataclass(slots=True)
class Row:
    key: str
    label: str
    server: str
    connections: int
    result: WrkResult | None = None
    baseline: Row | None = None
    peak_rss_mb: float | None = None
    service: bool = True
    note: str = ""
    skipped: str = ""


@dataclass(frozen=True, slots=True)
class Check:
    """An outcome check: after an intake run, one inbox row per 2xx answer."""

    row: str
    answered_2xx: int
    inbox_rows: int
    unanswered: int
    socket_errors: int
    non2xx: int

    @property
    def passed(self) -> bool:
        return self.answered_2xx == self.inbox_rows and self.unanswered == 0 and self.socket_errors == 0

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        detail = f"inbox rows added {self.inbox_rows} = 2xx answers {self.answered_2xx}"
        if self.answered_2xx != self.inbox_rows:
            detail = f"inbox rows added {self.inbox_rows} ≠ 2xx answers {self.answered_2xx}"
        extra = [f"{self.non2xx} non-2xx"] if self.non2xx else []
        if self.unanswered:
            extra.append(f"{self.unanswered} requests unanswered when wrk stopped (raise --grace)")
        if self.socket_errors:
            extra.append(f"{self.socket_errors} socket errors")
        return f"**{verdict}** {self.row}: {detail}" + (f" ({'; '.join(extra)})" if extra else "")
