variable "name" {
  description = "Environment name, the prefix of every name."
  type        = string
}

variable "instance_class" {
  description = "RDS instance class."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the DB subnet group."
  type        = list(string)
}

variable "security_group_id" {
  description = "The data stores' security group."
  type        = string
}

variable "master_password" {
  description = "Master password."
  type        = string
  sensitive   = true
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
}

variable "parameter_group_name" {
  description = "The instance's parameter group: the engine's default, or phase 2's tuned one."
  type        = string
}
