# Phase 2's tuned PostgreSQL parameter group (phasegate's database.connections): connections
# sized to the instance's memory, idle-in-transaction and keepalive timeouts, slow-statement
# log. Named IDENTIFIER-FAMILY-connections, as the step names it. max_connections is static:
# RDS applies it at the next reboot (the instance reports pending-reboot until then).

resource "aws_db_parameter_group" "this" {
  name        = "${var.db_identifier}-${var.family}-connections"
  family      = var.family
  description = "Connections of ${var.db_identifier}: max_connections by memory, timeouts"
  tags        = merge(var.tags, { Name = "${var.db_identifier}-${var.family}-connections" })

  parameter {
    name         = "max_connections"
    value        = tostring(var.max_connections)
    apply_method = "pending-reboot"
  }

  parameter {
    name  = "idle_in_transaction_session_timeout"
    value = tostring(var.idle_in_transaction_session_timeout_ms)
  }

  parameter {
    name  = "tcp_keepalives_idle"
    value = tostring(var.tcp_keepalives_idle_seconds)
  }

  parameter {
    name  = "log_min_duration_statement"
    value = tostring(var.log_min_duration_statement_ms)
  }

  lifecycle {
    create_before_destroy = true
  }
}
