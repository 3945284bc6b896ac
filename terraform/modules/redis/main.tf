# Redis: a replication group of two nodes (primary and replica) in the private subnets.

resource "aws_elasticache_subnet_group" "this" {
  name        = "${var.name}-cache"
  description = "${var.name} cache subnets"
  subnet_ids  = var.subnet_ids
  tags        = merge(var.tags, { Name = "${var.name}-cache-subnets" })
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = "${var.name}-redis"
  description                = "${var.name} Redis"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.node_type
  num_cache_clusters         = 2
  automatic_failover_enabled = true
  multi_az_enabled           = true
  apply_immediately          = true
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [var.security_group_id]
  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  snapshot_retention_limit   = 1
  tags                       = merge(var.tags, { Name = "${var.name}-redis" })
}
