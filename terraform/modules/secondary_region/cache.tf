# The primary's Redis module again (ENV-cache subnets, the ENV-redis replication group), in a
# security group open to the app only.

resource "aws_security_group" "cache" {
  count       = var.cache_enabled ? 1 : 0
  name        = "${var.name}-cache"
  description = "cache: from the app only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags.cache, { Name = "${var.name}-cache" })

  ingress {
    description     = "Redis from the app"
    from_port       = 6379
    to_port         = 6379
    protocol        = "tcp"
    security_groups = [aws_security_group.app[0].id]
  }
}

module "redis" {
  source            = "../redis"
  count             = var.cache_enabled ? 1 : 0
  name              = var.name
  node_type         = var.redis_node_type
  subnet_ids        = aws_subnet.public[*].id
  security_group_id = aws_security_group.cache[0].id
  tags              = local.tags.cache
}
