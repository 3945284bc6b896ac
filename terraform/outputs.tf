output "vpc_id" {
  description = "The environment's VPC."
  value       = module.network.vpc_id
}

output "alb_dns_name" {
  description = "Where the app answers."
  value       = module.alb.dns_name
}

output "ecs_cluster" {
  description = "The ECS cluster (Fargate compute), or null with compute_mode = ec2."
  value       = one(module.compute_ecs[*].cluster_name)
}

output "ecs_service" {
  description = "The ECS service (Fargate compute), or null with compute_mode = ec2."
  value       = one(module.compute_ecs[*].service_name)
}

output "autoscaling_group" {
  description = "The Auto Scaling group (EC2 compute), or null with compute_mode = ecs-fargate."
  value       = one(module.compute_ec2[*].autoscaling_group_name)
}

output "db_instance" {
  description = "The RDS instance identifier."
  value       = module.rds.identifier
}

output "redis_replication_group" {
  description = "The Redis replication group id."
  value       = module.redis.replication_group_id
}
