"""The exactly-once audit: what devices say they sampled against what ClickHouse holds.

A device's health reports carry the range of sequence numbers it stored this boot
(`sampled`, CDDL health-report key 9: readings of boot b are seq 0..last). For every
(device, boot) the audit takes the widest range reported and counts, in `readings`:
- missing: seqs in the range with no row (overflowed rings explain some: `overflow` is the
  device's own count of records it lost, reported beside);
- duplicated: seqs with more than one row in query results (FINAL), which exactly-once
  forbids;
- late: rows that reached the gateway more than `late_s` after they were sampled;
- ahead: rows beyond the last reported seq (sent before the next health report; normal).

Every count is exact and computed in SQL; the missing ranges listed are the first
`max_ranges` per (device, boot). Works on chDB and on a server alike (plain SQL).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class Queryable(Protocol):
    def query(self, sql: str) -> list[list[Any]]: ...


@dataclass
class BootAudit:
    device: str
    boot: int
    first: int
    last: int
    expected: int
    present: int = 0
    missing: int = 0
    duplicated: int = 0
    late: int = 0
    ahead: int = 0
    overflow: int = 0
    quarantined: int = 0
    missing_ranges: list[tuple[int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.duplicated == 0


@dataclass
class AuditReport:
    boots: list[BootAudit]
    late_s: float

    @property
    def ok(self) -> bool:
        return all(b.ok for b in self.boots)

    def totals(self) -> dict[str, int]:
        keys = ("expected", "present", "missing", "duplicated", "late", "ahead", "overflow")
        return {k: sum(getattr(b, k) for b in self.boots) for k in keys}

    @classmethod
    def from_dict(cls, d: dict) -> AuditReport:
        """The inverse of as_dict (the API's JSON)."""
        boots = []
        for b in d["boots"]:
            fields = {k: v for k, v in b.items() if k != "ok"}
            fields["missing_ranges"] = [(int(lo), int(hi)) for lo, hi in b["missing_ranges"]]
            boots.append(BootAudit(**fields))
        return cls(boots, float(d["late_s"]))

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "late_s": self.late_s,
            "totals": self.totals(),
            "boots": [asdict(b) | {"ok": b.ok} for b in self.boots],
        }

    def render(self) -> str:
        head = (
            f"{'device':<24} {'boot':>6} {'sampled':>17} {'present':>9} {'missing':>8} "
            f"{'dup':>5} {'late':>6} {'ahead':>6} {'overflow':>8}"
        )
        lines = [head]
        for b in self.boots:
            lines.append(
                f"{b.device:<24} {b.boot:>6} {f'{b.first}..{b.last}':>17} {b.present:>9} "
                f"{b.missing:>8} {b.duplicated:>5} {b.late:>6} {b.ahead:>6} {b.overflow:>8}"
            )
            for lo, hi in b.missing_ranges:
                lines.append(f"{'':<24} {'':>6} missing {lo}..{hi}")
        t = self.totals()
        lines.append(
            f"total: {len(self.boots)} device boots, {t['expected']} readings sampled, "
            f"{t['present']} present, {t['missing']} missing, {t['duplicated']} duplicated, "
            f"{t['late']} late (> {self.late_s:g} s), {t['ahead']} ahead of the last report"
        )
        lines.append("OK" if self.ok else "FAILED: readings missing or duplicated")
        return "\n".join(lines)


def _quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def audit(
    store: Queryable, device: str | None = None, late_s: float = 300.0, max_ranges: int = 20
) -> AuditReport:
    where = f"AND device = {_quote(device)}" if device else ""
    ranges = store.query(
        f"""
SELECT device, boot, min(sampled_first), max(sampled_last), max(overflow), max(quarantined)
FROM device_health FINAL
WHERE sampled_last IS NOT NULL {where}
GROUP BY device, boot
ORDER BY device, boot
"""
    )
    boots: dict[tuple[str, int], BootAudit] = {}
    for dev, boot, first, last, overflow, quarantined in ranges:
        b = BootAudit(
            str(dev),
            int(boot),
            int(first),
            int(last),
            int(last) - int(first) + 1,
            overflow=int(overflow),
            quarantined=int(quarantined),
        )
        boots[(b.device, b.boot)] = b
    if not boots:
        return AuditReport([], late_s)
    # the health ranges as a table to join against
    values = ", ".join(
        f"({_quote(b.device)}, {b.boot}, {b.first}, {b.last})" for b in boots.values()
    )
    expected = (
        f"SELECT * FROM values('device String, boot UInt32, first UInt64, last UInt64', {values})"
    )
    counts = store.query(
        f"""
SELECT e.device, e.boot,
       countIf(r.seq BETWEEN e.first AND e.last AND r.n >= 1),
       countIf(r.seq BETWEEN e.first AND e.last AND r.n > 1),
       countIf(r.seq > e.last),
       sumIf(r.late, r.seq BETWEEN e.first AND e.last)
FROM ({expected}) AS e
INNER JOIN (
    SELECT r0.device AS device, r0.boot AS boot, r0.seq AS seq, count() AS n,
           countIf(b.received > r0.ts + toIntervalMillisecond({int(late_s * 1000)})) AS late
    FROM (SELECT device, boot, seq, batch_seq, ts FROM readings FINAL) AS r0
    LEFT JOIN (SELECT device, boot, seq AS bseq, received FROM batches FINAL) AS b
        ON b.device = r0.device AND b.boot = r0.boot AND b.bseq = r0.batch_seq
    GROUP BY r0.device, r0.boot, r0.seq
) AS r ON r.device = e.device AND r.boot = e.boot
GROUP BY e.device, e.boot
"""
    )
    for dev, boot, present, dup, ahead, late in counts:
        b = boots[(str(dev), int(boot))]
        b.present, b.duplicated, b.ahead, b.late = int(present), int(dup), int(ahead), int(late)
        b.missing = b.expected - b.present
    # missing ranges: gaps between consecutive present seqs, with the range's ends as
    # sentinels, the first few per (device, boot)
    gaps = store.query(
        f"""
SELECT device, boot, lo, hi FROM (
    SELECT device, boot, prev + 1 AS lo, seq - 1 AS hi,
           row_number() OVER (PARTITION BY device, boot ORDER BY seq) AS k
    FROM (
        SELECT device, boot, seq,
               lagInFrame(seq) OVER (PARTITION BY device, boot ORDER BY seq
                                     ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS prev,
               row_number() OVER (PARTITION BY device, boot ORDER BY seq) AS i
        FROM (
            SELECT DISTINCT r.device AS device, r.boot AS boot, toInt64(r.seq) AS seq
            FROM (SELECT device, boot, seq FROM readings FINAL) AS r
            INNER JOIN ({expected}) AS e ON r.device = e.device AND r.boot = e.boot
            WHERE r.seq BETWEEN e.first AND e.last
            UNION ALL
            SELECT device, boot, toInt64(first) - 1 FROM ({expected})
            UNION ALL
            SELECT device, boot, toInt64(last) + 1 FROM ({expected})
        )
    )
    WHERE i > 1 AND seq > prev + 1
)
WHERE k <= {int(max_ranges)}
ORDER BY device, boot, lo
"""
    )
    for dev, boot, lo, hi in gaps:
        b = boots[(str(dev), int(boot))]
        b.missing_ranges.append((int(lo), int(hi)))
    return AuditReport(list(boots.values()), late_s)
