variable "name" {
  description = "Environment name, the prefix of every name."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets the ALB listens in."
  type        = list(string)
}

variable "app_port" {
  description = "Port the app listens on."
  type        = number
}

variable "target_type" {
  description = "How targets register in the app's target group: ip (ECS tasks) or instance (an Auto Scaling group)."
  type        = string
  default     = "ip"
}

variable "own_weight" {
  description = "The listener's weight for this module's target group; null: not forwarded to."
  type        = number
  default     = 1
}

variable "other_target_group_arn" {
  description = "Another target group the listener forwards to (the EC2 group's), or null."
  type        = string
  default     = null
}

variable "other_weight" {
  description = "The listener's weight for the other target group."
  type        = number
  default     = 0
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
}
