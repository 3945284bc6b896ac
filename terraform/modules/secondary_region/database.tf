# A cross-region read replica of the primary, in a subnet group and security group of its own
# region. A parameter group cannot be attached across regions, so a tuned one (phase 2) is
# copied under the same name; a default group exists in every region. A KMS key is regional:
# the replica is encrypted with the region's own RDS key.

resource "aws_security_group" "db" {
  count       = var.database_enabled ? 1 : 0
  name        = "${var.name}-db"
  description = "db: from the app only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags.database, { Name = "${var.name}-db" })

  ingress {
    description     = "PostgreSQL from the app"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [aws_security_group.app[0].id]
  }
}

module "db_parameters" {
  source                                 = "../db_parameters"
  count                                  = var.database_enabled && var.db_tuning != null ? 1 : 0
  db_identifier                          = var.db_identifier
  family                                 = var.db_family
  max_connections                        = var.db_tuning.max_connections
  idle_in_transaction_session_timeout_ms = var.db_tuning.idle_in_transaction_session_timeout_ms
  tcp_keepalives_idle_seconds            = var.db_tuning.tcp_keepalives_idle_seconds
  log_min_duration_statement_ms          = var.db_tuning.log_min_duration_statement_ms
  tags                                   = local.tags.database
}

resource "aws_db_subnet_group" "replica" {
  count       = var.database_enabled ? 1 : 0
  name        = "${var.name}-db"
  description = "${var.name} read replica subnets"
  subnet_ids  = aws_subnet.public[*].id
  tags        = merge(local.tags.database, { Name = "${var.name}-db-subnets" })
}

data "aws_kms_key" "rds" {
  count  = var.database_enabled ? 1 : 0
  key_id = "alias/aws/rds"
}

resource "aws_db_instance" "replica" {
  count                      = var.database_enabled ? 1 : 0
  identifier                 = substr("${var.db_identifier}-${var.region}", 0, 63)
  replicate_source_db        = var.primary_db_arn
  instance_class             = var.db_instance_class
  parameter_group_name       = var.db_tuning != null ? module.db_parameters[0].name : "default.${var.db_family}"
  db_subnet_group_name       = aws_db_subnet_group.replica[0].name
  vpc_security_group_ids     = [aws_security_group.db[0].id]
  publicly_accessible        = false
  storage_encrypted          = true
  kms_key_id                 = data.aws_kms_key.rds[0].arn
  auto_minor_version_upgrade = true
  copy_tags_to_snapshot      = true
  # As the primary: its logs in CloudWatch when it serves after a failover.
  enabled_cloudwatch_logs_exports = ["postgresql"]
  apply_immediately               = true
  # The primary holds the data: a standby replica is deleted without a final snapshot.
  skip_final_snapshot = true
  tags                = merge(local.tags.database, { Name = "${var.db_identifier}-${var.region}" })
}
