-- Login attempts counted by the throttle (store/logins.py): one row per password check that is
-- running or failed within the window; a successful check deletes its row. `at` is Unix time.

CREATE TABLE login_attempts (
    id       uuid PRIMARY KEY,
    username text NOT NULL,
    address  text NOT NULL,
    tier     text NOT NULL,
    at       double precision NOT NULL
);
CREATE INDEX login_attempts_username ON login_attempts (username, at);
CREATE INDEX login_attempts_address ON login_attempts (address, at);
CREATE INDEX login_attempts_at ON login_attempts (at);
