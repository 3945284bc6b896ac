variable "name" {
  description = "Environment name, the prefix of the policies' names."
  type        = string
}

variable "compute_mode" {
  description = "ecs-fargate (scale the ECS service) or ec2 (scale the Auto Scaling group)."
  type        = string
}

variable "ecs_cluster" {
  description = "The ECS cluster (ecs-fargate)."
  type        = string
  default     = null
}

variable "ecs_service" {
  description = "The ECS service (ecs-fargate)."
  type        = string
  default     = null
}

variable "autoscaling_group" {
  description = "The Auto Scaling group (ec2); its min and max are compute_ec2's."
  type        = string
  default     = null
}

variable "resource_label" {
  description = "ALBRequestCountPerTarget's label: app/NAME/ID/targetgroup/NAME/ID."
  type        = string
}

variable "min_capacity" {
  description = "Fewest ECS tasks."
  type        = number
}

variable "max_capacity" {
  description = "Most ECS tasks."
  type        = number
}

variable "cpu_target_percent" {
  description = "Average CPU utilisation to track."
  type        = number
}

variable "requests_per_target" {
  description = "ALB requests per target per minute to track."
  type        = number
}

variable "scale_in_cooldown_seconds" {
  description = "ECS: wait after a scaling activity before scaling in."
  type        = number
}

variable "scale_out_cooldown_seconds" {
  description = "ECS: wait after a scaling activity before scaling out again."
  type        = number
}

variable "instance_warmup_seconds" {
  description = "EC2: seconds before a new instance's metrics count."
  type        = number
}

variable "tags" {
  description = "Tags on the scalable target."
  type        = map(string)
}
