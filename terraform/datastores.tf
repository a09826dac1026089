# Cloud SQL for PostgreSQL (P&L) and Memorystore for Redis (alerts stream,
# TV status, locks), both on private IPs in the VPC only. MongoDB is Atlas,
# reached by the URI in the mongo-uri secret.

resource "google_sql_database_instance" "pnl" {
  name                = "${local.name}-pnl"
  region              = var.region
  database_version    = "POSTGRES_16"
  deletion_protection = var.cloudsql_deletion_protection

  settings {
    tier              = var.cloudsql_tier
    availability_type = var.cloudsql_availability_type
    user_labels       = local.labels

    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.main.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "06:00"
    }

    maintenance_window {
      day  = 7
      hour = 8
    }

    insights_config {
      query_insights_enabled = true
    }
  }

  depends_on = [google_service_networking_connection.private_services]
}

resource "google_sql_database" "pnl" {
  name     = "spreadpilot"
  instance = google_sql_database_instance.pnl.name
}

# No password here (it would land in the state): the operator sets it with
# `gcloud sql users set-password` and stores the URL in pnl-database-url.
resource "google_sql_user" "pnl" {
  name     = "spreadpilot"
  instance = google_sql_database_instance.pnl.name
}

resource "google_redis_instance" "main" {
  name               = "${local.name}-redis"
  region             = var.region
  tier               = var.redis_tier
  memory_size_gb     = var.redis_memory_size_gb
  redis_version      = "REDIS_7_2"
  authorized_network = google_compute_network.main.id
  connect_mode       = "PRIVATE_SERVICE_ACCESS"
  labels             = local.labels

  depends_on = [google_service_networking_connection.private_services]
}
