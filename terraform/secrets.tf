# Secret Manager secrets. Terraform creates the secrets, never their values:
# the operator adds versions (docs/deploy.md), so no credential reaches the
# state or the repository. Access is granted per secret to exactly the
# service accounts whose code reads it.

resource "google_secret_manager_secret" "secret" {
  for_each  = local.secrets
  secret_id = each.key
  labels    = local.labels

  annotations = {
    env         = each.value.env
    description = each.value.description
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "function" {
  for_each  = local.function_secret_grants
  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.value.function].email}"
}

resource "google_secret_manager_secret_iam_member" "sidecar" {
  for_each  = toset(local.sidecar_secrets)
  secret_id = google_secret_manager_secret.secret[each.value].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.sidecar.email}"
}

# IB credentials per follower (and the VNC password): only the VM that runs
# the gateways reads them, at boot, into files on tmpfs.
resource "google_secret_manager_secret" "gateway" {
  for_each  = local.gateway_secrets
  secret_id = each.key
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "gateway" {
  for_each  = local.gateway_secrets
  secret_id = google_secret_manager_secret.gateway[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.sidecar.email}"
}
