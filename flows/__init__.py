"""Prefect flows and the `evomerge` CLI. Defaults are set before Prefect is imported anywhere, so an
embedded (ephemeral) Prefect starts reliably on a fresh machine without touching a user's own settings."""

import os

for _key, _value in {
    # Analytics on an ephemeral start races the SQLite database ("database is locked").
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The first ephemeral start on a fresh PREFECT_HOME takes ~14 s; the default timeout is 20 s.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # One log line per task run drowns the search's own progress display.
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # `evomerge lineage` / `reproduce` read artifacts; a bar per file is noise on stderr.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # No network at run time: MLflow would otherwise start a telemetry thread that posts usage events.
    "MLFLOW_DISABLE_TELEMETRY": "true",
}.items():
    os.environ.setdefault(_key, _value)
