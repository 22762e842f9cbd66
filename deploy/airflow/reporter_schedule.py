"""Airflow DAG: every 5 minutes, one task runs `reporter schedule --once`.

The reporter decides what is due and catches up on missed periods itself (and its claims
table makes overlapping or repeated starts harmless), so Airflow's own catch-up is off and
one DAG run at a time is enough. REPORTER_LEDGER_URL (the shared PostgreSQL ledger) comes
from the worker's environment or your secrets backend, never from the DAG file.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG(
    dag_id="reporter_schedule",
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},
    tags=["reporter"],
) as dag:
    BashOperator(
        task_id="reporter_schedule_once",
        bash_command="reporter schedule --once -p /srv/reporter --log-format json",
        append_env=True,
        execution_timeout=timedelta(hours=2),
    )
