variable "name" {
  description = "Environment name, the prefix of every name."
  type        = string
}

variable "role_suffix" {
  description = "Appended to the execution role's name: IAM is global, so a copy in a second region needs a role of its own."
  type        = string
  default     = ""
}

variable "region" {
  description = "Region of the log group the tasks write to."
  type        = string
}

variable "image" {
  description = "The app's container image."
  type        = string
}

variable "app_port" {
  description = "Port the app listens on."
  type        = number
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64."
  type        = string
}

variable "desired_count" {
  description = "Tasks wanted."
  type        = number
}

variable "subnet_ids" {
  description = "Subnets the tasks run in."
  type        = list(string)
}

variable "assign_public_ip" {
  description = "Give tasks a public IP (needed in public subnets without NAT)."
  type        = bool
}

variable "security_group_id" {
  description = "The app's security group."
  type        = string
}

variable "target_group_arn" {
  description = "The ALB target group (target type ip)."
  type        = string
}

variable "enable_spot" {
  description = "Run part of the service on FARGATE_SPOT (phase 3)."
  type        = bool
}

variable "spot_fargate_base" {
  description = "Tasks always on FARGATE when Spot is on."
  type        = number
}

variable "spot_fargate_weight" {
  description = "FARGATE's weight above the base when Spot is on."
  type        = number
}

variable "spot_fargate_spot_weight" {
  description = "FARGATE_SPOT's weight above the base when Spot is on."
  type        = number
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
}
