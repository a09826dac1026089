# The sidecar VM: Container-Optimized OS running the sidecar container and one
# IB Gateway container (IBC-based) per follower on a private Docker network.
# It has no external IP (no access_config): the API is reachable only from the
# Serverless VPC Access connector (network.tf) and egress goes through NAT.

locals {
  sidecar_image = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}/sidecar:${var.sidecar_image_tag}"
  sidecar_url   = "http://${google_compute_address.sidecar.address}:${var.sidecar_port}"
  redis_url     = "redis://${google_redis_instance.main.host}:${google_redis_instance.main.port}"

  # IBC's relay ports inside the gateway image: 4004 paper, 4003 live.
  gateway_api_port = var.ib_trading_mode == "live" ? 4003 : 4004

  gateways = {
    for index, id in sort(keys(var.followers)) : id => {
      container = "ib-gw-${id}"
      vnc_port  = 5900 + index
      client_id = var.followers[id].client_id
    }
  }

  sidecar_settings = merge(
    {
      GOOGLE_CLOUD_PROJECT = var.project_id
      PUBSUB_PROJECT_ID    = var.project_id
      SECRETS_BACKEND      = "env"
      SIDECAR_PORT         = tostring(var.sidecar_port)
      REDIS_URL            = local.redis_url
      MONGO_DB             = var.mongo_db
      IB_TRADING_MODE      = var.ib_trading_mode
      TZ                   = var.ib_time_zone
    },
    var.sidecar_env,
  )
}

resource "google_compute_address" "sidecar" {
  name         = "${local.name}-sidecar"
  region       = var.region
  subnetwork   = google_compute_subnetwork.main.id
  address_type = "INTERNAL"
}

resource "google_compute_instance" "sidecar" {
  name                      = "${local.name}-sidecar"
  zone                      = var.zone
  machine_type              = var.sidecar_machine_type
  tags                      = [local.sidecar_tag]
  labels                    = local.labels
  allow_stopping_for_update = true

  boot_disk {
    initialize_params {
      image = "cos-cloud/cos-stable"
      size  = 30
      type  = "pd-balanced"
    }
  }

  # No access_config block: no external IP.
  network_interface {
    subnetwork = google_compute_subnetwork.main.id
    network_ip = google_compute_address.sidecar.address
  }

  service_account {
    email  = google_service_account.sidecar.email
    scopes = ["cloud-platform"]
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  metadata = {
    user-data = templatefile("${path.module}/templates/sidecar-cloud-init.yaml.tftpl", {
      project_id           = var.project_id
      registry_host        = "${var.region}-docker.pkg.dev"
      sidecar_image        = local.sidecar_image
      sidecar_port         = var.sidecar_port
      sidecar_settings     = local.sidecar_settings
      sidecar_secrets      = { for id in local.sidecar_secrets : id => local.secrets[id].env }
      gateways             = local.gateways
      gateway_image        = var.ib_gateway_image
      trading_mode         = var.ib_trading_mode
      time_zone            = var.ib_time_zone
      auto_restart_time    = var.ib_auto_restart_time
      twofa_timeout_action = var.ib_twofa_timeout_action
      relogin_after_twofa  = var.ib_relogin_after_twofa_timeout ? "yes" : "no"
      vnc_enabled          = var.ib_vnc_enabled
    })
    google-logging-enabled    = "true"
    google-monitoring-enabled = "true"
    enable-oslogin            = "TRUE"
    block-project-ssh-keys    = "TRUE"
  }

  depends_on = [
    google_secret_manager_secret_iam_member.sidecar,
    google_secret_manager_secret_iam_member.gateway,
    google_artifact_registry_repository_iam_member.sidecar_pull,
    google_compute_router_nat.main,
  ]
}
