# What the code needs, stated once. tests/unit/deploy reads the Python code
# and fails when these tables and the code disagree (a missing function, a
# secret read without a grant, a grant nobody uses, an undeclared topic).

locals {
  name        = "${var.name_prefix}-${var.environment}"
  sidecar_tag = "${var.name_prefix}-${var.environment}-sidecar"

  labels = {
    app         = "spreadpilot"
    environment = var.environment
    managed-by  = "terraform"
  }

  # --- The schedule table: the same file the local runner reads. ----------
  schedule          = yamldecode(file("${path.module}/../schedule.yaml"))
  schedule_timezone = try(local.schedule.timezone, "America/New_York")
  schedule_jobs     = { for job in local.schedule.jobs : job.name => job }

  # Cloud Scheduler jobs: every job with a cron `schedule`.
  scheduled_jobs = {
    for name, job in local.schedule_jobs : name => {
      target           = job.target
      schedule         = job.schedule
      time_zone        = try(job.timezone, local.schedule_timezone)
      attempt_deadline = "${try(job.attempt_deadline_seconds, 180)}s"
      description      = try(job.description, "")
    } if try(job.schedule, null) != null
  }

  # Pub/Sub-triggered functions: every job with a `topic`.
  topic_jobs = {
    for name, job in local.schedule_jobs : name => {
      target = job.target
      topic  = job.topic
    } if try(job.topic, null) != null
  }

  # --- Pub/Sub topics the code publishes to. ----------------------------------
  topics = ["signals", "alerts"]

  # --- One Cloud Function per functions-framework target in functions/main.py.
  # secrets:   Secret Manager secret ids its code reads (least privilege).
  # publishes: topics it publishes to (publisher role on those topics only).
  # timeout_seconds must cover the job's attempt deadline in schedule.yaml.
  functions = {
    poll_signals = {
      description     = "Reads today's signal from the sheet; publishes new ones to signals."
      memory          = "512Mi"
      timeout_seconds = 120
      secrets         = ["mongo-uri", "sheets-api-key"]
      publishes       = ["signals", "alerts"]
    }
    dispatch_signal = {
      description     = "Sends a signal to every eligible follower's sidecar."
      memory          = "256Mi"
      timeout_seconds = 120
      secrets         = ["mongo-uri", "sidecar-token"]
      publishes       = []
    }
    tv_monitor = {
      description     = "Time-value check of open spreads; liquidates CRITICAL ones."
      memory          = "256Mi"
      timeout_seconds = 60
      secrets         = ["mongo-uri", "sidecar-token"]
      publishes       = ["alerts"]
    }
    pnl_mtm = {
      description     = "Marks every follower's P&L to market."
      memory          = "256Mi"
      timeout_seconds = 60
      secrets         = ["mongo-uri", "pnl-database-url", "sidecar-token"]
      publishes       = []
    }
    pnl_rollup_daily = {
      description     = "Rolls closed trading days into pnl_daily."
      memory          = "256Mi"
      timeout_seconds = 300
      secrets         = ["pnl-database-url"]
      publishes       = []
    }
    pnl_rollup_monthly = {
      description     = "Rolls complete months into pnl_monthly and commission statements."
      memory          = "256Mi"
      timeout_seconds = 300
      secrets         = ["mongo-uri", "pnl-database-url"]
      publishes       = []
    }
    alert_fanout = {
      description     = "Sends each alert once to Telegram and e-mail."
      memory          = "256Mi"
      timeout_seconds = 120
      secrets         = ["mongo-uri", "sendgrid-api-key", "telegram-bot-token"]
      publishes       = []
    }
  }

  # GCP-safe names: Cloud Functions and service account ids use '-', not '_'.
  function_names = { for fn, _ in local.functions : fn => replace(fn, "_", "-") }

  # --- Secrets (spreadpilot.secrets CATALOGUE): id => environment variable. --
  secrets = {
    "sidecar-token"      = { env = "SIDECAR_TOKEN", description = "Bearer token of the sidecar HTTP API." }
    "telegram-bot-token" = { env = "TELEGRAM_BOT_TOKEN", description = "Telegram Bot API token." }
    "sendgrid-api-key"   = { env = "SENDGRID_API_KEY", description = "SendGrid v3 API key." }
    "mongo-uri"          = { env = "MONGO_URI", description = "MongoDB (Atlas) URI with credentials." }
    "pnl-database-url"   = { env = "PNL_DATABASE_URL", description = "PostgreSQL URL of the P&L database, password included." }
    "sheets-api-key"     = { env = "GOOGLE_SHEETS_API_KEY", description = "Sheets API key (only for a link-shared sheet)." }
  }

  # Secrets that may be left without a version: the code works without them.
  optional_secrets = ["sheets-api-key"]

  # The sidecar process (container on the VM) reads these.
  sidecar_secrets = ["mongo-uri", "pnl-database-url", "sidecar-token"]

  # The sidecar publishes alerts too.
  sidecar_publishes = ["alerts"]

  # Per-follower IB credentials, read only by the VM that runs the gateways.
  gateway_secrets = merge(
    { for id, _ in var.followers : "ib-${id}-username" => { follower = id, env = "TWS_USERID" } },
    { for id, _ in var.followers : "ib-${id}-password" => { follower = id, env = "TWS_PASSWORD" } },
    var.ib_vnc_enabled ? { "ib-vnc-password" = { follower = "", env = "VNC_SERVER_PASSWORD" } } : {},
  )

  function_secret_grants = merge([
    for fn, cfg in local.functions : {
      for secret in cfg.secrets : "${fn}/${secret}" => { function = fn, secret = secret }
    }
  ]...)

  function_topic_grants = merge([
    for fn, cfg in local.functions : {
      for topic in cfg.publishes : "${fn}/${topic}" => { function = fn, topic = topic }
    }
  ]...)

  # Topic-triggered functions get the topic's push subscription; every other
  # function is invoked by Cloud Scheduler.
  topic_functions     = toset([for job in local.topic_jobs : job.target])
  scheduled_functions = toset([for job in local.scheduled_jobs : job.target])
}
