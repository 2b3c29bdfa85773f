-- otpgate schema 1: one row per enrolled user, the record in the user-file
-- format (docs/ARCHITECTURE.md, §5.2), and the sends counted for users who
-- are not enrolled yet (the hourly limit of `otpgate enroll email|sms`).
CREATE TABLE otpgate_records (
    user_name  text PRIMARY KEY,
    record     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE otpgate_enrollment_sends (
    user_name  text PRIMARY KEY,
    sends      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
