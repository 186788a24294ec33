-- A database written by the schema of migrations 1..5 (recorded by number), with one
-- queued and one interrupted ('delivering') recipient: the upgrade test starts from it.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES(1);
INSERT INTO schema_version VALUES(2);
INSERT INTO schema_version VALUES(3);
INSERT INTO schema_version VALUES(4);
INSERT INTO schema_version VALUES(5);
CREATE TABLE IF NOT EXISTS "messages" (
   "id" TEXT PRIMARY KEY,
   "sender" TEXT,
   "received" REAL,
   "size" INTEGER,
   "spool" TEXT,
   "client" TEXT
);
INSERT INTO messages VALUES('1A2330EF19EA2D25DAEED','doctor@clinic.test',1796152947.1033961772,37,'1A2330EF19EA2D25DAEED.eml','127.0.0.1');
CREATE TABLE IF NOT EXISTS "recipients" (
   "message_id" TEXT REFERENCES "messages"("id"),
   "rcpt" TEXT,
   "domain" TEXT,
   "confidential" INTEGER,
   "mode" TEXT,
   "reason" TEXT,
   "state" TEXT,
   "attempts" INTEGER,
   "next_attempt" REAL,
   "last_reply" TEXT,
   "updated" REAL,
   PRIMARY KEY ("message_id", "rcpt")
);
INSERT INTO recipients VALUES('1A2330EF19EA2D25DAEED','waiting@later.test','later.test',0,'opportunistic','','queued',0,1796152947.1033961772,'',1796152947.1033961772);
INSERT INTO recipients VALUES('1A2330EF19EA2D25DAEED','interrupted@later.test','later.test',0,'opportunistic','','delivering',0,1796152947.1033961772,'',1796152947.1033961772);
CREATE TABLE IF NOT EXISTS "pickups" (
   "id" TEXT PRIMARY KEY,
   "message_id" TEXT,
   "sender" TEXT,
   "recipient" TEXT,
   "created" REAL,
   "expires" REAL,
   "key_id" TEXT,
   "wrapped_key" BLOB,
   "blob" TEXT,
   "read_at" REAL,
   "size" INTEGER
, "kind" TEXT NOT NULL DEFAULT 'message', "thread_id" TEXT, "replied_at" REAL);
CREATE TABLE IF NOT EXISTS "users" (
   "address" TEXT PRIMARY KEY,
   "first_name" TEXT,
   "last_name" TEXT,
   "password_hash" TEXT,
   "created" REAL,
   "password_changed" REAL
, "time_zone" TEXT NOT NULL DEFAULT 'UTC');
CREATE TABLE IF NOT EXISTS "verifications" (
   "id" INTEGER PRIMARY KEY,
   "address" TEXT,
   "code_hash" TEXT,
   "created" REAL,
   "expires" REAL,
   "attempts" INTEGER,
   "used" INTEGER
);
CREATE TABLE IF NOT EXISTS "sessions" (
   "token_hash" TEXT PRIMARY KEY,
   "address" TEXT,
   "created" REAL,
   "last_seen" REAL
);
CREATE TABLE IF NOT EXISTS "audit" (
   "id" INTEGER PRIMARY KEY,
   "pickup_id" TEXT,
   "at" REAL,
   "event" TEXT,
   "client" TEXT,
   "detail" TEXT
);
CREATE TABLE IF NOT EXISTS "attempts" (
   "id" INTEGER PRIMARY KEY,
   "message_id" TEXT,
   "rcpt" TEXT,
   "at" REAL,
   "host" TEXT,
   "address" TEXT,
   "reply" TEXT,
   "tls_version" TEXT,
   "cipher" TEXT,
   "cert_subject" TEXT,
   "cert_issuer" TEXT,
   "verified" INTEGER,
   "reason" TEXT
);
CREATE TABLE IF NOT EXISTS "tls_cache" (
   "domain" TEXT,
   "host" TEXT,
   "starttls" INTEGER,
   "verified" INTEGER,
   "seen" REAL,
   "detail" TEXT,
   PRIMARY KEY ("domain", "host")
);
CREATE TABLE IF NOT EXISTS "mta_sts_cache" (
   "domain" TEXT PRIMARY KEY,
   "policy_id" TEXT,
   "mode" TEXT,
   "mx" TEXT,
   "max_age" INTEGER,
   "fetched" REAL
);
CREATE TABLE IF NOT EXISTS "password_resets" (
   "token_hash" TEXT PRIMARY KEY,
   "address" TEXT,
   "pickup_id" TEXT,
   "created" REAL,
   "expires" REAL,
   "used" INTEGER
);
CREATE TABLE IF NOT EXISTS "login_failures" (
   "id" INTEGER PRIMARY KEY,
   "key" TEXT,
   "at" REAL
);
CREATE INDEX "idx_recipients_state_next_attempt"
    ON "recipients" ("state", "next_attempt");
CREATE INDEX "idx_pickups_recipient"
    ON "pickups" ("recipient");
CREATE INDEX "idx_pickups_expires"
    ON "pickups" ("expires");
CREATE INDEX "idx_verifications_address"
    ON "verifications" ("address");
CREATE INDEX "idx_sessions_address"
    ON "sessions" ("address");
CREATE INDEX "idx_audit_pickup_id"
    ON "audit" ("pickup_id");
CREATE INDEX "idx_attempts_message_id"
    ON "attempts" ("message_id");
CREATE INDEX "idx_pickups_thread_id"
    ON "pickups" ("thread_id");
CREATE INDEX "idx_password_resets_address"
    ON "password_resets" ("address");
CREATE INDEX "idx_login_failures_key_at"
    ON "login_failures" ("key", "at");
COMMIT;
