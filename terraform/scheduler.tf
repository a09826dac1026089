# Cloud Scheduler jobs, generated from schedule.yaml (the table the local
# runner reads): cron in the table's time zone (America/New_York), an
# authenticated POST to the target function with an OIDC token.

resource "google_cloud_scheduler_job" "job" {
  for_each         = local.scheduled_jobs
  name             = "${local.name}-${each.key}"
  region           = var.region
  description      = each.value.description
  schedule         = each.value.schedule
  time_zone        = each.value.time_zone
  attempt_deadline = each.value.attempt_deadline

  # A missed minute is not worth replaying late: the next tick does the work.
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.function[each.value.target].service_config[0].uri
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode({ job = each.key }))

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.function[each.value.target].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_service_iam_member.scheduler_invoker]
}
