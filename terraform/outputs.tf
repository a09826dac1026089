output "sidecar_internal_url" {
  description = "Where the functions reach the sidecar (private; through the connector)."
  value       = local.sidecar_url
}

output "sidecar_image" {
  description = "Image the sidecar VM runs."
  value       = local.sidecar_image
}

output "function_urls" {
  description = "HTTPS endpoint of each function (internal ingress by default)."
  value       = { for fn, f in google_cloudfunctions2_function.function : fn => f.service_config[0].uri }
}

output "function_service_accounts" {
  description = "Runtime identity of each function (share the signal sheet with poll_signals')."
  value       = { for fn, sa in google_service_account.function : fn => sa.email }
}

output "topics" {
  description = "Pub/Sub topics and their dead-letter topics."
  value = {
    for t in local.topics : t => {
      topic       = google_pubsub_topic.topic[t].id
      dead_letter = google_pubsub_topic.dead_letter[t].id
    }
  }
}

output "scheduler_jobs" {
  description = "Cloud Scheduler jobs generated from schedule.yaml."
  value       = { for name, job in google_cloud_scheduler_job.job : name => job.schedule }
}

output "gateways" {
  description = "Per follower: the gateway host and port to put in the follower record, and the VM-local VNC port."
  value = {
    for id, gw in local.gateways : id => {
      host      = gw.container
      port      = local.gateway_api_port
      client_id = gw.client_id
      vnc_port  = gw.vnc_port
    }
  }
}

output "cloudsql_private_ip" {
  description = "Private IP of the P&L database (for the pnl-database-url secret)."
  value       = google_sql_database_instance.pnl.private_ip_address
}

output "redis_url" {
  description = "Memorystore URL (private)."
  value       = local.redis_url
}

output "secrets_to_fill" {
  description = "Secret Manager secrets that need a version before the first apply of the functions."
  value       = concat(keys(local.secrets), keys(local.gateway_secrets))
}

output "sidecar_vm" {
  description = "Name and zone of the sidecar VM (for IAP SSH)."
  value       = { name = google_compute_instance.sidecar.name, zone = var.zone }
}
