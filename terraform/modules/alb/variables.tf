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
  description = "ip (Fargate tasks) or instance (the EC2 Auto Scaling group)."
  type        = string
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
}
