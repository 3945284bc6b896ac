output "replication_group_id" {
  description = "The Redis replication group id."
  value       = aws_elasticache_replication_group.this.id
}

output "member_clusters" {
  description = "The group's member cache clusters, GROUP-001 and GROUP-002 (AWS's names)."
  value       = [for i in range(1, aws_elasticache_replication_group.this.num_cache_clusters + 1) : format("%s-%03d", aws_elasticache_replication_group.this.replication_group_id, i)]
}
