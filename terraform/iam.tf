# Identities. Every function runs as its own service account, and every grant
# below is on one resource (a secret, a topic, a function), not the project,
# except log and metric writing, which has no narrower scope. No account gets
# a primitive role (owner, editor, viewer); tests/unit/deploy checks that.

resource "google_service_account" "function" {
  for_each     = local.functions
  account_id   = trimsuffix(substr("${local.name}-fn-${local.function_names[each.key]}", 0, 30), "-")
  display_name = "SpreadPilot ${var.environment} function ${each.key}"
  description  = each.value.description
}

# Builds the functions' containers (instead of the default compute account,
# which often holds a primitive role).
resource "google_service_account" "functions_build" {
  account_id   = "${local.name}-fn-build"
  display_name = "SpreadPilot ${var.environment} functions build"
}

# Calls the scheduled functions (OIDC tokens from Cloud Scheduler).
resource "google_service_account" "scheduler" {
  account_id   = "${local.name}-scheduler"
  display_name = "SpreadPilot ${var.environment} Cloud Scheduler invoker"
}

# Calls the topic-triggered functions (OIDC tokens on Pub/Sub push).
resource "google_service_account" "pubsub_push" {
  account_id   = "${local.name}-push"
  display_name = "SpreadPilot ${var.environment} Pub/Sub push invoker"
}

# The sidecar VM: runs the sidecar and the IB Gateway containers.
resource "google_service_account" "sidecar" {
  account_id   = "${local.name}-sidecar"
  display_name = "SpreadPilot ${var.environment} sidecar VM"
}

resource "google_project_iam_member" "function_logs" {
  for_each = local.functions
  project  = var.project_id
  role     = "roles/logging.logWriter"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_project_iam_member" "functions_build" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.functions_build.email}"
}

resource "google_project_iam_member" "sidecar" {
  for_each = toset(["roles/logging.logWriter", "roles/monitoring.metricWriter"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.sidecar.email}"
}

# Pub/Sub signs the push requests' OIDC tokens as the push account.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  service_account_id = google_service_account.pubsub_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# Invokers: the scheduler only for scheduled functions, the push account only
# for topic-triggered ones.
resource "google_cloud_run_service_iam_member" "scheduler_invoker" {
  for_each = local.scheduled_functions
  location = var.region
  service  = google_cloudfunctions2_function.function[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_cloud_run_service_iam_member" "push_invoker" {
  for_each = local.topic_functions
  location = var.region
  service  = google_cloudfunctions2_function.function[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.pubsub_push.email}"
}
