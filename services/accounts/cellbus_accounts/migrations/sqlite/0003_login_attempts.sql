-- Login attempts counted by the throttle (store/logins.py): one row per password check that is
-- running or failed within the window; a successful check deletes its row. `at` is Unix time.

CREATE TABLE login_attempts (
    id       TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    address  TEXT NOT NULL,
    tier     TEXT NOT NULL,
    at       REAL NOT NULL
);
CREATE INDEX login_attempts_username ON login_attempts (username, at);
CREATE INDEX login_attempts_address ON login_attempts (address, at);
CREATE INDEX login_attempts_at ON login_attempts (at);
