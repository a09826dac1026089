# The Cloud Functions (2nd gen, python311), one per entry point in
# functions/main.py, all built from one source archive: functions/, the
# spreadpilot library, a requirements.txt exported from uv.lock and a root
# main.py (scripts/package_functions.sh).

resource "google_storage_bucket" "functions_source" {
  name                        = "${var.project_id}-${local.name}-functions-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = local.labels

  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }
}

# The object name carries the archive's hash, so a code change redeploys the
# functions and an unchanged archive does not.
resource "google_storage_bucket_object" "functions_source" {
  name   = "functions-source-${filemd5(var.functions_source_archive)}.zip"
  bucket = google_storage_bucket.functions_source.name
  source = var.functions_source_archive
}

resource "google_storage_bucket_iam_member" "functions_build_reads_source" {
  bucket = google_storage_bucket.functions_source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.functions_build.email}"
}

resource "google_cloudfunctions2_function" "function" {
  for_each    = local.functions
  name        = "${local.name}-${local.function_names[each.key]}"
  location    = var.region
  description = each.value.description
  labels      = local.labels

  build_config {
    runtime         = "python311"
    entry_point     = each.key
    service_account = google_service_account.functions_build.id

    source {
      storage_source {
        bucket = google_storage_bucket.functions_source.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    timeout_seconds                  = each.value.timeout_seconds
    min_instance_count               = 0
    max_instance_count               = var.function_max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = var.functions_ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function[each.key].email
    vpc_connector                    = google_vpc_access_connector.main.id
    vpc_connector_egress_settings    = "PRIVATE_RANGES_ONLY"

    environment_variables = merge(
      {
        GOOGLE_CLOUD_PROJECT = var.project_id
        PUBSUB_PROJECT_ID    = var.project_id
        SECRETS_BACKEND      = "env"
        REDIS_URL            = local.redis_url
        SIDECAR_URL          = local.sidecar_url
        MONGO_DB             = var.mongo_db
        IB_TRADING_MODE      = var.ib_trading_mode
        LOG_EXECUTION_ID     = "true"
      },
      var.function_env,
    )

    # Secret Manager values handed to the process as environment variables,
    # only the ones this function reads; its own account holds the grant.
    dynamic "secret_environment_variables" {
      for_each = [
        for secret in each.value.secrets : secret
        if !contains(local.optional_secrets, secret) || contains(var.enabled_optional_secrets, secret)
      ]
      content {
        key        = local.secrets[secret_environment_variables.value].env
        project_id = var.project_id
        secret     = google_secret_manager_secret.secret[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.functions_build,
    google_storage_bucket_iam_member.functions_build_reads_source,
    google_secret_manager_secret_iam_member.function,
  ]
}
