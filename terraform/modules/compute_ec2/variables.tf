variable "name" {
  description = "Environment name, the prefix of every name."
  type        = string
}

variable "role_suffix" {
  description = "Appended to the instance role's and profile's names: IAM is global, so a copy in a second region needs its own."
  type        = string
  default     = ""
}

variable "own_target_group" {
  description = "Make the group an instance target group of its own; false: register in target_group_arn."
  type        = bool
  default     = true
}

variable "target_group_arn" {
  description = "The instance target group to register in when own_target_group is false."
  type        = string
  default     = null
}

variable "image" {
  description = "The app's container image (must have an arm64 variant)."
  type        = string
}

variable "app_port" {
  description = "Port the app listens on."
  type        = number
}

variable "instance_type" {
  description = "Graviton instance type."
  type        = string
}

variable "min_size" {
  description = "Auto Scaling group minimum."
  type        = number
}

variable "max_size" {
  description = "Auto Scaling group maximum."
  type        = number
}

variable "desired_capacity" {
  description = "Instances wanted now."
  type        = number
}

variable "subnet_ids" {
  description = "Subnets the instances run in."
  type        = list(string)
}

variable "security_group_id" {
  description = "The app's security group."
  type        = string
}

variable "vpc_id" {
  description = "The VPC of the group's target group."
  type        = string
}

variable "group_metrics" {
  description = "Group metrics collected each minute (phase 2's scaling collects two)."
  type        = list(string)
}

variable "enable_spot" {
  description = "Run the group on a mixed-instances policy with Spot (phase 3)."
  type        = bool
}

variable "spot_on_demand_base" {
  description = "Instances always on-demand when Spot is on."
  type        = number
}

variable "spot_instance_types" {
  description = "The Spot group's instance types (same size, several pools)."
  type        = list(string)
}

variable "tags" {
  description = "Tags on every resource, propagated to the instances."
  type        = map(string)
}
