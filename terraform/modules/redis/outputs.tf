output "replication_group_id" {
  description = "The Redis replication group id."
  value       = aws_elasticache_replication_group.this.id
}
