"""``spreadpilot jobs list|pause|resume|run``: the scheduled jobs.

``list`` reads the schedule table offline. ``pause``/``resume`` act on the
Cloud Scheduler jobs Terraform created from the same table (job id = the
table's job name). ``run`` forces a run now: on Cloud Scheduler with
``--cloud``, against a functions-framework URL with ``--url`` (local), or, by
default, prints what it would call.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Literal

import click

from spreadpilot.cli._root import main


def _schedule(path: str | None) -> object:
    from spreadpilot.schedule import ScheduleError, load_schedule

    try:
        return load_schedule(path)
    except ScheduleError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _job(path: str | None, name: str) -> object:
    from spreadpilot.schedule import Schedule

    table = _schedule(path)
    assert isinstance(table, Schedule)
    try:
        return table.job(name)
    except KeyError as exc:
        click.echo(f"error: {exc.args[0]}", err=True)
        sys.exit(2)


_schedule_option = click.option(
    "--schedule", "schedule_path", default=None, help="Schedule table (default: schedule.yaml)."
)
_project_option = click.option(
    "--project",
    default=lambda: os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("PUBSUB_PROJECT_ID"),
    help="Google Cloud project (default: GOOGLE_CLOUD_PROJECT).",
)
_location_option = click.option(
    "--location",
    default=lambda: os.environ.get("SCHEDULER_LOCATION", "us-east4"),
    show_default="SCHEDULER_LOCATION or us-east4",
)


@main.group()
def jobs() -> None:
    """Scheduled jobs (the schedule table and Cloud Scheduler)."""


@jobs.command("list")
@_schedule_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_jobs(schedule_path: str | None, as_json: bool) -> None:
    """Every job, its trigger (cron in its time zone, or topic) and target."""
    from spreadpilot.schedule import Schedule

    table = _schedule(schedule_path)
    assert isinstance(table, Schedule)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": j.name,
                        "target": j.target,
                        "schedule": j.schedule,
                        "topic": j.topic,
                        "timezone": j.timezone,
                        "description": j.description,
                    }
                    for j in table.jobs
                ],
                indent=2,
            )
        )
        return
    click.echo(f"{'JOB':<20} {'TRIGGER':<42} TARGET")
    for j in table.jobs:
        trigger = f"cron {j.schedule} ({j.timezone})" if j.schedule else f"topic {j.topic}"
        click.echo(f"{j.name:<20} {trigger:<42} {j.target}")


def _scheduler_name(project: str | None, location: str, name: str) -> str:
    if not project:
        click.echo("error: no project: pass --project or set GOOGLE_CLOUD_PROJECT", err=True)
        sys.exit(2)
    return f"projects/{project}/locations/{location}/jobs/{name}"


def _scheduled_job(schedule_path: str | None, name: str) -> object:
    from spreadpilot.schedule import Job

    job = _job(schedule_path, name)
    assert isinstance(job, Job)
    if job.topic:
        click.echo(
            f"error: {job.name} runs on messages of topic {job.topic!r}, not on a schedule",
            err=True,
        )
        sys.exit(2)
    return job


def _set_job_state(
    action: Literal["pause", "resume"],
    name: str,
    schedule_path: str | None,
    project: str | None,
    location: str,
) -> None:
    """Pause or resume the Cloud Scheduler job ``name`` and echo its new state."""
    from google.cloud import scheduler_v1

    from spreadpilot.schedule import Job

    job = _scheduled_job(schedule_path, name)
    assert isinstance(job, Job)
    client = scheduler_v1.CloudSchedulerClient()
    change = client.pause_job if action == "pause" else client.resume_job
    result = change(name=_scheduler_name(project, location, job.name))
    click.echo(f"{job.name}: {scheduler_v1.Job.State(result.state).name}")


@jobs.command("pause")
@click.argument("name")
@_schedule_option
@_project_option
@_location_option
def pause(name: str, schedule_path: str | None, project: str | None, location: str) -> None:
    """Pause a Cloud Scheduler job."""
    _set_job_state("pause", name, schedule_path, project, location)


@jobs.command("resume")
@click.argument("name")
@_schedule_option
@_project_option
@_location_option
def resume(name: str, schedule_path: str | None, project: str | None, location: str) -> None:
    """Resume a paused Cloud Scheduler job."""
    _set_job_state("resume", name, schedule_path, project, location)


@jobs.command("run")
@click.argument("name")
@_schedule_option
@click.option("--url", default=None, help="POST to this functions-framework URL now (local).")
@click.option("--body", default="{}", help="JSON body for the HTTP target.")
@click.option("--cloud", is_flag=True, help="Force a run of the Cloud Scheduler job.")
@_project_option
@_location_option
def run(
    name: str,
    schedule_path: str | None,
    url: str | None,
    body: str,
    cloud: bool,
    project: str | None,
    location: str,
) -> None:
    """Run a scheduled job now (locally with --url, on Cloud Scheduler with --cloud)."""
    from spreadpilot.schedule import Job

    job = _scheduled_job(schedule_path, name)
    assert isinstance(job, Job)
    if cloud:
        from google.cloud import scheduler_v1

        client = scheduler_v1.CloudSchedulerClient()
        client.run_job(name=_scheduler_name(project, location, job.name))
        click.echo(f"{job.name}: run requested on Cloud Scheduler")
        return
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        click.echo(f"error: --body is not JSON: {exc.msg}", err=True)
        sys.exit(2)
    if url is None:
        click.echo(
            f"would POST {json.dumps(payload)} to target {job.target} "
            f"(functions-framework --target {job.target} --source functions/main.py); "
            "pass --url to do it"
        )
        return
    import httpx

    timeout = float(job.attempt_deadline_seconds or 60) + 30
    try:
        response = httpx.post(url, json=payload, timeout=timeout)
    except httpx.HTTPError as exc:
        click.echo(f"error: {url}: {type(exc).__name__}", err=True)
        sys.exit(1)
    click.echo(response.text)
    if response.status_code >= 400:
        sys.exit(1)
