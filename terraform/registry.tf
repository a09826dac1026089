# The sidecar image's home. Cloud Build pushes to it; the sidecar VM pulls.
resource "google_artifact_registry_repository" "images" {
  repository_id = "${local.name}-images"
  location      = var.region
  format        = "DOCKER"
  description   = "SpreadPilot ${var.environment} container images"
  labels        = local.labels
  depends_on    = [google_project_service.apis]
}

resource "google_artifact_registry_repository_iam_member" "sidecar_pull" {
  repository = google_artifact_registry_repository.images.name
  location   = var.region
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.sidecar.email}"
}
