output "cluster_name" {
  description = "The ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "service_name" {
  description = "The ECS service."
  value       = aws_ecs_service.app.name
}

output "log_group" {
  description = "The app's log group (awslogs)."
  value       = aws_cloudwatch_log_group.app.name
}
