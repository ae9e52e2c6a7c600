"""What the reliability suite did: faults injected, malformed inputs tried, fuzz cases run, values
compared and discrepancies found. Tests add to the one TALLY; the suite prints it at the end and
writes it to tests/artifacts/reliability-counts.json."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Tally:
    """Counts by kind. `compared` counts values checked against the ledger; `discrepancies` those
    that differed (the goal is zero)."""

    faults: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    fuzz: Counter[str] = field(default_factory=Counter)
    compared: Counter[str] = field(default_factory=Counter)
    discrepancies: Counter[str] = field(default_factory=Counter)
    survived: Counter[str] = field(default_factory=Counter)  # outages every process lived through
    disk_faults: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # requests the API refused (401/403/415/422/429)

    def fault(self, kind: str, count: int = 1) -> None:
        self.faults[kind] += count

    def outage_survived(self, kind: str, count: int = 1) -> None:
        self.survived[kind] += count

    def disk_fault(self, kind: str, count: int = 1) -> None:
        self.disk_faults[kind] += count

    def refused_request(self, kind: str, count: int = 1) -> None:
        self.refused[kind] += count

    def tried_malformed(self, kind: str, count: int = 1) -> None:
        self.malformed[kind] += count

    def fuzzed(self, kind: str, count: int = 1) -> None:
        self.fuzz[kind] += count

    def checked(self, kind: str, compared: int, differing: int) -> None:
        self.compared[kind] += compared
        self.discrepancies[kind] += differing

    def empty(self) -> bool:
        return not (
            self.faults
            or self.malformed
            or self.fuzz
            or self.compared
            or self.survived
            or self.disk_faults
            or self.refused
        )

    def as_dict(self) -> dict[str, Any]:
        def block(counter: Counter[str]) -> dict[str, Any]:
            return {"total": sum(counter.values()), **dict(sorted(counter.items()))}

        return {
            "faults_injected": block(self.faults),
            "outages_survived": block(self.survived),
            "disk_faults_injected": block(self.disk_faults),
            "malformed_inputs_tried": block(self.malformed),
            "requests_refused": block(self.refused),
            "fuzz_cases_run": block(self.fuzz),
            "values_compared": block(self.compared),
            "discrepancies_found": block(self.discrepancies),
        }

    def lines(self) -> list[str]:
        """A small table: one line per total, then its parts."""
        out = []
        for title, counter in (
            ("faults injected", self.faults),
            ("outages survived", self.survived),
            ("disk faults injected", self.disk_faults),
            ("malformed inputs tried", self.malformed),
            ("requests refused (API)", self.refused),
            ("fuzz cases run", self.fuzz),
            ("values compared with the ledger", self.compared),
            ("discrepancies found", self.discrepancies),
        ):
            out.append(f"{title:<34} {sum(counter.values()):>10,}")
            out.extend(f"    {kind:<30} {count:>10,}" for kind, count in sorted(counter.items()))
        return out

    def counters(self) -> dict[str, dict[str, int]]:
        """Every counter as plain dicts: what a test worker sends to the controller."""
        return {name: dict(getattr(self, name)) for name in self.__dataclass_fields__}

    def add(self, counters: dict[str, dict[str, int]]) -> None:
        """Adds a worker's counters (from `counters()`) to these."""
        for name, counts in counters.items():
            getattr(self, name).update(counts)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")


TALLY = Tally()
