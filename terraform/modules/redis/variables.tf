variable "name" {
  description = "Environment name, the prefix of every name."
  type        = string
}

variable "node_type" {
  description = "ElastiCache node type."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the cache subnet group."
  type        = list(string)
}

variable "security_group_id" {
  description = "The data stores' security group."
  type        = string
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
}
