# One variable per migration decision (phasegate's `terraform.variables` map names them),
# then the environment's identity and the application it runs.

variable "environment" {
  description = "Environment name: prefixes every resource and is its Environment tag."
  type        = string
}

variable "region" {
  description = "AWS region of the environment."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Extra tags on every resource (the provider's default_tags)."
  type        = map(string)
  default     = {}
}

variable "vpc_cidr" {
  description = "The VPC's /16; public subnets take .0-.N, private ones .10-.1N."
  type        = string
  default     = "10.1.0.0/16"
}

variable "az_count" {
  description = "Availability zones used (one public and one private subnet in each)."
  type        = number
  default     = 2
}

# -- migration decisions --------------------------------------------------------------------

variable "enable_nat_gateway" {
  description = "One NAT gateway per AZ routed from the private subnets (nat.remove sets false)."
  type        = bool
  default     = true
}

variable "service_subnets" {
  description = "Where the app runs: private (egress through NAT) or public (public IP, SG admits only the ALB)."
  type        = string
  default     = "private"

  validation {
    condition     = contains(["private", "public"], var.service_subnets)
    error_message = "service_subnets must be \"private\" or \"public\"."
  }
}

variable "compute_mode" {
  description = "What runs the app: ecs-fargate (compute_ecs) or ec2 (compute_ec2, an Auto Scaling group)."
  type        = string
  default     = "ecs-fargate"

  validation {
    condition     = contains(["ecs-fargate", "ec2"], var.compute_mode)
    error_message = "compute_mode must be \"ecs-fargate\" or \"ec2\"."
  }
}

variable "cpu_architecture" {
  description = "Fargate task CPU architecture: X86_64 or ARM64 (Graviton)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be \"X86_64\" or \"ARM64\"."
  }
}

variable "ec2_instance_type" {
  description = "Instance type of compute_ec2's launch template."
  type        = string
  default     = "t4g.medium"
}

variable "asg_min" {
  description = "compute_ec2 Auto Scaling group minimum size."
  type        = number
  default     = 1
}

variable "asg_max" {
  description = "compute_ec2 Auto Scaling group maximum size."
  type        = number
  default     = 5
}

variable "rds_instance_class" {
  description = "RDS PostgreSQL instance class."
  type        = string
  default     = "db.t3.micro"
}

variable "redis_node_type" {
  description = "ElastiCache Redis node type (both nodes of the replication group)."
  type        = string
  default     = "cache.t3.micro"
}

# -- the application ------------------------------------------------------------------------

variable "app_image" {
  description = "The app's container image (multi-arch: amd64 and arm64), pushed by CI."
  type        = string
}

variable "app_port" {
  description = "Port the app listens on."
  type        = number
  default     = 8000
}

variable "app_desired_count" {
  description = "Tasks (Fargate) or instances wanted (EC2, within asg_min..asg_max)."
  type        = number
  default     = 2
}

variable "db_master_password" {
  description = "RDS master password: TF_VAR_db_master_password, or a var file kept out of git."
  type        = string
  sensitive   = true
}
