variable "name" {
  description = "The environment: names the copies as the primary's are named."
  type        = string
}

variable "region" {
  description = "The second region (the provider passed in is configured for it)."
  type        = string
}

variable "cidr" {
  description = "The second region's VPC /16."
  type        = string
}

variable "tags" {
  description = "Tags on every resource: the stack's and the second region's marks (PhasegateRole = secondary)."
  type        = map(string)
}

variable "alb_enabled" {
  description = "The ALB part (regions.expand.alb)."
  type        = bool
}

variable "database_enabled" {
  description = "The read replica part (regions.expand.database)."
  type        = bool
}

variable "cache_enabled" {
  description = "The Redis part (regions.expand.cache)."
  type        = bool
}

variable "compute_enabled" {
  description = "The ECS service part (regions.expand.compute)."
  type        = bool
}

variable "dns_enabled" {
  description = "The Route 53 failover part (regions.expand.dns)."
  type        = bool
}

variable "app_port" {
  description = "The app's port."
  type        = number
}

variable "image" {
  description = "The app's image: the primary's (an ECR image pulls across regions)."
  type        = string
}

variable "compute_mode" {
  description = "What serves in the primary (ecs-fargate or ec2): the copy is the same."
  type        = string
}

variable "ec2_instance_type" {
  description = "The EC2 group's instance type, as the primary's."
  type        = string
}

variable "asg_min" {
  description = "The EC2 group's minimum, as the primary's."
  type        = number
}

variable "asg_max" {
  description = "The EC2 group's maximum, as the primary's."
  type        = number
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64, as the primary's tasks."
  type        = string
}

variable "desired_count" {
  description = "Tasks of the copied service (instances of the copied group), as the primary's."
  type        = number
}

variable "redis_node_type" {
  description = "The Redis node type, as the primary's."
  type        = string
}

variable "primary_db_arn" {
  description = "The primary database the replica streams from."
  type        = string
}

variable "db_identifier" {
  description = "The primary database's identifier (the replica is IDENTIFIER-REGION)."
  type        = string
}

variable "db_instance_class" {
  description = "The replica's class, as the primary's."
  type        = string
}

variable "db_family" {
  description = "The primary's parameter group family."
  type        = string
}

variable "db_tuning" {
  description = "The primary's tuned parameters (phase 2's database.connections), copied into a group of the same name here; null: the primary uses the default group."
  type = object({
    max_connections                        = number
    idle_in_transaction_session_timeout_ms = number
    tcp_keepalives_idle_seconds            = number
    log_min_duration_statement_ms          = number
  })
  default = null
}

variable "primary_alb" {
  description = "The primary's ALB, the failover record's PRIMARY side."
  type = object({
    dns_name = string
    zone_id  = string
  })
}

variable "zone_id" {
  description = "The Route 53 hosted zone of the failover records."
  type        = string
}

variable "record_name" {
  description = "The failover record's name."
  type        = string
}

variable "health_check_path" {
  description = "The path each side's Route 53 health check requests."
  type        = string
}
