# Topics, and a push subscription per topic-triggered job of schedule.yaml with
# a retry policy and a dead-letter topic. The push goes to the function's URL
# with an OIDC token; functions-framework turns the push body into the same
# CloudEvent an Eventarc trigger would deliver. (An Eventarc trigger manages
# its own subscription, which cannot be given a dead-letter policy here.)

resource "google_pubsub_topic" "topic" {
  for_each                   = toset(local.topics)
  name                       = each.value
  labels                     = local.labels
  message_retention_duration = "86400s"
  depends_on                 = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  for_each = toset(local.topics)
  name     = "${each.value}-dead-letter"
  labels   = local.labels
}

# Keeps dead-lettered messages for a week so an operator can inspect and replay them.
resource "google_pubsub_subscription" "dead_letter_hold" {
  for_each                   = toset(local.topics)
  name                       = "${each.value}-dead-letter-hold"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60
  labels                     = local.labels

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "push" {
  for_each             = local.topic_jobs
  name                 = "${local.name}-${each.key}"
  topic                = google_pubsub_topic.topic[each.value.topic].id
  ack_deadline_seconds = min(600, local.functions[each.value.target].timeout_seconds)
  labels               = local.labels

  push_config {
    push_endpoint = google_cloudfunctions2_function.function[each.value.target].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
      audience              = google_cloudfunctions2_function.function[each.value.target].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = var.pubsub_min_backoff
    maximum_backoff = var.pubsub_max_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.value.topic].id
    max_delivery_attempts = var.pubsub_max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [google_cloud_run_service_iam_member.push_invoker]
}

# The Pub/Sub service agent moves undeliverable messages to the dead-letter
# topics, which needs publish there and subscribe on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = toset(local.topics)
  topic    = google_pubsub_topic.dead_letter[each.key].id
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = local.topic_jobs
  subscription = google_pubsub_subscription.push[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# Publishers: each function only on the topics its code publishes to.
resource "google_pubsub_topic_iam_member" "function_publisher" {
  for_each = local.function_topic_grants
  topic    = google_pubsub_topic.topic[each.value.topic].id
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.function[each.value.function].email}"
}

resource "google_pubsub_topic_iam_member" "sidecar_publisher" {
  for_each = toset(local.sidecar_publishes)
  topic    = google_pubsub_topic.topic[each.value].id
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.sidecar.email}"
}
