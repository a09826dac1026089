# Inputs. Nothing here is a secret: credentials go to Secret Manager
# (see secrets.tf and docs/deploy.md), never into tfvars or state.

variable "project_id" {
  description = "Google Cloud project that hosts the environment."
  type        = string
}

variable "region" {
  description = "Region of the functions, Cloud SQL, Redis, the connector and Artifact Registry."
  type        = string
  default     = "us-east4"
}

variable "zone" {
  description = "Zone of the sidecar VM (inside var.region)."
  type        = string
  default     = "us-east4-a"
}

variable "environment" {
  description = "Short environment name (dev, prod); part of resource names."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,9}$", var.environment))
    error_message = "environment must be 2-10 lower-case letters or digits."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "sp"
}

# --- Network ----------------------------------------------------------------

variable "subnet_cidr" {
  description = "Primary range of the subnet the sidecar VM lives in."
  type        = string
  default     = "10.10.0.0/24"
}

variable "connector_cidr" {
  description = "The /28 of the Serverless VPC Access connector; the only source allowed to reach the sidecar port."
  type        = string
  default     = "10.8.0.0/28"
}

variable "connector_machine_type" {
  description = "Machine type of the connector instances."
  type        = string
  default     = "e2-micro"
}

variable "private_service_range_prefix_length" {
  description = "Size of the range reserved for Cloud SQL and Memorystore private IPs."
  type        = number
  default     = 20
}

variable "iap_ssh_enabled" {
  description = "Allow SSH to the sidecar VM through Identity-Aware Proxy (operator access for the IB Gateway login and 2FA)."
  type        = bool
  default     = true
}

# --- Functions -----------------------------------------------------------------

variable "functions_source_archive" {
  description = "Path of the functions source zip built by scripts/package_functions.sh."
  type        = string
  default     = "../dist/functions-source.zip"
}

variable "functions_ingress" {
  description = "Ingress of the functions: Cloud Scheduler and Pub/Sub push in the same project count as internal."
  type        = string
  default     = "ALLOW_INTERNAL_ONLY"
  validation {
    condition     = contains(["ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB", "ALLOW_ALL"], var.functions_ingress)
    error_message = "functions_ingress must be ALLOW_INTERNAL_ONLY, ALLOW_INTERNAL_AND_GCLB or ALLOW_ALL."
  }
}

variable "function_env" {
  description = "Extra plain (non-secret) settings for every function, e.g. GOOGLE_SHEET_URL, ADMIN_EMAIL, TELEGRAM_ADMIN_CHAT_ID, MIN_PRICE."
  type        = map(string)
  default     = {}
}

variable "function_max_instances" {
  description = "Upper bound of instances per function (protects the Sheets quota and the sidecar)."
  type        = number
  default     = 3
}

variable "pubsub_max_delivery_attempts" {
  description = "Deliveries of one message before it goes to the dead-letter topic."
  type        = number
  default     = 10
}

variable "pubsub_min_backoff" {
  description = "Shortest delay before a failed push is retried."
  type        = string
  default     = "10s"
}

variable "pubsub_max_backoff" {
  description = "Longest delay between retries of a failed push."
  type        = string
  default     = "600s"
}

# --- Data stores ---------------------------------------------------------------

variable "cloudsql_tier" {
  description = "Cloud SQL machine tier of the P&L database."
  type        = string
  default     = "db-custom-1-3840"
}

variable "cloudsql_availability_type" {
  description = "ZONAL or REGIONAL (high availability)."
  type        = string
  default     = "ZONAL"
}

variable "cloudsql_deletion_protection" {
  description = "Refuse to destroy the P&L database."
  type        = bool
  default     = true
}

variable "redis_memory_size_gb" {
  description = "Memorystore capacity."
  type        = number
  default     = 1
}

variable "redis_tier" {
  description = "BASIC or STANDARD_HA."
  type        = string
  default     = "BASIC"
}

variable "mongo_db" {
  description = "MongoDB database name (the URI itself is the secret mongo-uri)."
  type        = string
  default     = "spreadpilot"
}

# --- Sidecar VM and IB Gateways ---------------------------------------------------

variable "sidecar_image_tag" {
  description = "Tag of the sidecar image in Artifact Registry (Cloud Build passes the commit SHA)."
  type        = string
  default     = "latest"
}

variable "sidecar_port" {
  description = "Port of the sidecar HTTP API."
  type        = number
  default     = 8001
}

variable "sidecar_machine_type" {
  description = "Sidecar VM size: about 1 GB of memory per IB Gateway plus the sidecar."
  type        = string
  default     = "e2-standard-2"
}

variable "sidecar_env" {
  description = "Extra plain (non-secret) settings of the sidecar container."
  type        = map(string)
  default     = {}
}

variable "ib_gateway_image" {
  description = "IBC-based IB Gateway image; pin a version tag in production."
  type        = string
  default     = "ghcr.io/gnzsnz/ib-gateway:stable"
}

variable "ib_trading_mode" {
  description = "paper or live, for every gateway of this environment."
  type        = string
  default     = "paper"
  validation {
    condition     = contains(["paper", "live"], var.ib_trading_mode)
    error_message = "ib_trading_mode must be paper or live."
  }
}

variable "ib_time_zone" {
  description = "Time zone of the gateways (trading times are New York times)."
  type        = string
  default     = "America/New_York"
}

variable "ib_auto_restart_time" {
  description = "Daily IBC auto-restart time of each gateway (keeps the session without a new 2FA)."
  type        = string
  default     = "11:59 PM"
}

variable "ib_twofa_timeout_action" {
  description = "What IBC does when a 2FA prompt is not answered in time: restart (ask again) or exit."
  type        = string
  default     = "restart"
  validation {
    condition     = contains(["restart", "exit"], var.ib_twofa_timeout_action)
    error_message = "ib_twofa_timeout_action must be restart or exit."
  }
}

variable "ib_relogin_after_twofa_timeout" {
  description = "Whether IBC logs in again after a 2FA timeout (a new push to IBKR Mobile)."
  type        = bool
  default     = true
}

variable "ib_vnc_enabled" {
  description = "Run a VNC server in each gateway, bound to the VM's loopback (reach it through an IAP SSH tunnel)."
  type        = bool
  default     = true
}

variable "followers" {
  description = "Followers served by this sidecar VM; each gets its own IB Gateway container and credential secrets."
  type = map(object({
    client_id = optional(number, 1)
  }))
  default = {}
  validation {
    condition     = alltrue([for id in keys(var.followers) : can(regex("^[a-z0-9][a-z0-9-]{0,30}$", id))])
    error_message = "follower ids must be lower-case letters, digits and '-' (at most 31)."
  }
}

variable "enabled_optional_secrets" {
  description = "Optional secrets (see local.optional_secrets) that have a version and should be handed to the functions, e.g. [\"sheets-api-key\"]."
  type        = list(string)
  default     = []
}
