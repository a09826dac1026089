# One VPC. The functions reach the sidecar, Cloud SQL and Redis through the
# Serverless VPC Access connector; nothing here has a public IP, and the
# sidecar VM reaches IB's servers, the gateway image registry and MongoDB
# Atlas through Cloud NAT (egress only).

resource "google_compute_network" "main" {
  name                    = "${local.name}-vpc"
  auto_create_subnetworks = false
  depends_on              = [google_project_service.apis]
}

resource "google_compute_subnetwork" "main" {
  name                     = "${local.name}-subnet"
  region                   = var.region
  network                  = google_compute_network.main.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true
}

# Private services access: Cloud SQL and Memorystore get addresses in this range.
resource "google_compute_global_address" "private_services" {
  name          = "${local.name}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = var.private_service_range_prefix_length
  network       = google_compute_network.main.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.main.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}

resource "google_vpc_access_connector" "main" {
  name          = "${local.name}-conn"
  region        = var.region
  network       = google_compute_network.main.name
  ip_cidr_range = var.connector_cidr
  machine_type  = var.connector_machine_type
  min_instances = 2
  max_instances = 3
  depends_on    = [google_project_service.apis]
}

resource "google_compute_router" "main" {
  name    = "${local.name}-router"
  region  = var.region
  network = google_compute_network.main.id
}

resource "google_compute_router_nat" "main" {
  name                               = "${local.name}-nat"
  router                             = google_compute_router.main.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"

  subnetwork {
    name                    = google_compute_subnetwork.main.id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# The sidecar API: only the connector (that is, the functions) may call it.
resource "google_compute_firewall" "sidecar_api" {
  name          = "${local.name}-allow-sidecar-from-connector"
  network       = google_compute_network.main.id
  direction     = "INGRESS"
  priority      = 1000
  source_ranges = [var.connector_cidr]
  target_tags   = [local.sidecar_tag]

  allow {
    protocol = "tcp"
    ports    = [tostring(var.sidecar_port)]
  }
}

# Operator access for the IB Gateway login and 2FA: SSH through Identity-Aware
# Proxy only (Google's IAP range), never from the internet. VNC is bound to the
# VM's loopback and reached through that SSH tunnel.
resource "google_compute_firewall" "iap_ssh" {
  count         = var.iap_ssh_enabled ? 1 : 0
  name          = "${local.name}-allow-iap-ssh"
  network       = google_compute_network.main.id
  direction     = "INGRESS"
  priority      = 1000
  source_ranges = ["35.235.240.0/20"]
  target_tags   = [local.sidecar_tag]

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}
