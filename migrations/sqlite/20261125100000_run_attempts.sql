-- Executions of a run that started and did not end cleanly: a run whose execution keeps
-- killing the process is quarantined instead of crashing every restart.
ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
