variable "name" {
  description = "Environment name, the prefix of every name."
  type        = string
}

variable "region" {
  description = "Region the dashboard's widgets read."
  type        = string
}

variable "compute_mode" {
  description = "ecs-fargate or ec2: which compute the CPU and at-max alarms watch."
  type        = string
}

variable "load_balancer" {
  description = "The ALB's CloudWatch dimension, app/NAME/ID."
  type        = string
}

variable "target_group" {
  description = "The app's target group dimension, targetgroup/NAME/ID."
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
  description = "The Auto Scaling group (ec2)."
  type        = string
  default     = null
}

variable "max_capacity" {
  description = "The compute's scaling maximum: the at-max alarm fires there."
  type        = number
}

variable "db_identifier" {
  description = "The RDS instance watched."
  type        = string
}

variable "db_connections_threshold" {
  description = "Connections that set off the RDS connections alarm."
  type        = number
}

variable "cache_members" {
  description = "The Redis member clusters watched."
  type        = list(string)
}

variable "log_group" {
  description = "The app's log group whose error lines are counted; null: none."
  type        = string
  default     = null
}

variable "emails" {
  description = "Email addresses subscribed to the alert topic."
  type        = list(string)
}

variable "https_endpoints" {
  description = "HTTPS endpoints subscribed to the alert topic."
  type        = list(string)
}

variable "monthly_budget_usd" {
  description = "The monthly budget's amount."
  type        = number
}

variable "budget_cost_filter" {
  description = "The budget's cost-allocation tag filter, user:KEY$VALUE."
  type        = string
}

variable "thresholds" {
  description = "Alarm thresholds and evaluation_minutes over the defaults (phasegate's monitoring.thresholds)."
  type        = map(number)
}

variable "tags" {
  description = "Tags on the topic, alarms and budget (the environment's discovery tags)."
  type        = map(string)
}
