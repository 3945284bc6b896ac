# RDS PostgreSQL, single-AZ, in the private subnets.

resource "aws_db_subnet_group" "this" {
  name        = "${var.name}-db"
  description = "${var.name} database subnets"
  subnet_ids  = var.subnet_ids
  tags        = merge(var.tags, { Name = "${var.name}-db-subnets" })
}

resource "aws_db_instance" "this" {
  identifier                      = "${var.name}-db"
  instance_class                  = var.instance_class
  engine                          = "postgres"
  engine_version                  = "16.4"
  parameter_group_name            = var.parameter_group_name
  allocated_storage               = 20
  storage_type                    = "gp3"
  storage_encrypted               = true
  username                        = "platform"
  password                        = var.master_password
  db_subnet_group_name            = aws_db_subnet_group.this.name
  vpc_security_group_ids          = [var.security_group_id]
  multi_az                        = false
  apply_immediately               = true
  backup_retention_period         = 7
  copy_tags_to_snapshot           = true
  auto_minor_version_upgrade      = true
  deletion_protection             = true
  skip_final_snapshot             = false
  final_snapshot_identifier       = "${var.name}-db-final"
  enabled_cloudwatch_logs_exports = ["postgresql"]
  tags                            = merge(var.tags, { Name = "${var.name}-db" })
}
