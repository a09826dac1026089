# Provider and state. The state lives in a GCS bucket that the operator creates
# once per environment (docs/deploy.md); `terraform init -backend-config=...`
# names it, so this file holds no project-specific value.
terraform {
  required_version = ">= 1.6.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
  }

  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}
