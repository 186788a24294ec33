"""The key-encryption keys of the SQLite back-end: files in <dir>/keys (crypto.KeyRing),
what each still wraps from table pickups, and their destruction audited in table audit."""

from __future__ import annotations

from gateway.storage.protocols import KEY_DESTROYED, AuditEvent, KeyUsage
from gateway.storage.sqlite.base import SQLitePart
from gateway.vault import crypto


class SQLiteKeys(SQLitePart):
    keys: crypto.KeyRing

    def key_usage(self) -> list[KeyUsage]:
        wrapped = {r["key_id"]: r for r in self.query(
            "SELECT key_id, count(*) AS n, max(expires) AS last FROM pickups GROUP BY key_id")}
        # A key id a row names but no file holds is listed too: its messages cannot be read.
        ids = sorted(set(self.keys.key_ids()) | set(wrapped))
        return [KeyUsage(i, wrapped[i]["n"] if i in wrapped else 0,
                         wrapped[i]["last"] if i in wrapped else None) for i in ids]

    def rotate_keys(self) -> int:
        return self.keys.rotate()

    def destroy_key(self, key_id: str, client: str, detail: str) -> bool:
        if not self.keys.destroy(key_id):
            return False
        with self.transaction() as db:
            db.execute("INSERT INTO audit (pickup_id, at, event, client, detail)"
                       " VALUES (?,?,?,?,?)",
                       (f"key:{key_id}", self.clock(), KEY_DESTROYED, client, detail))
        return True

    def retire_epochs(self, now: float) -> None:
        """Nothing to do: the KEK files were the only copy of each KEK, and destroy_key
        shredded them."""

    def key_destructions(self) -> list[AuditEvent]:
        return [AuditEvent(r["pickup_id"], r["at"], r["event"], r["client"] or "",
                           r["detail"] or "")
                for r in self.query("SELECT * FROM audit WHERE event=? ORDER BY at, id",
                                    (KEY_DESTROYED,))]
