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

variable "enable_s3_endpoint" {
  description = "An S3 gateway endpoint on every route table even while NAT runs (nat.remove adds it before the gateways go; without NAT it is always there)."
  type        = bool
  default     = false
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
  description = "What serves the app's users: ecs-fargate (compute_ecs) or ec2 (compute_ec2, an Auto Scaling group); it must be enabled below."
  type        = string
  default     = "ecs-fargate"

  validation {
    condition     = contains(["ecs-fargate", "ec2"], var.compute_mode)
    error_message = "compute_mode must be \"ecs-fargate\" or \"ec2\"."
  }
}

variable "ecs_service_enabled" {
  description = "compute_ecs runs (the ECS service; the listener forwards to it at weight 0 while compute_mode is ec2)."
  type        = bool
  default     = true
}

variable "ec2_group_enabled" {
  description = "compute_ec2 runs (the Auto Scaling group; the listener forwards to it at weight 0 while compute_mode is ecs-fargate)."
  type        = bool
  default     = false
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

variable "enable_autoscaling" {
  description = "Phase 2 target tracking on the compute (scaling.enable sets true)."
  type        = bool
  default     = false
}

variable "autoscaling_min_capacity" {
  description = "Fewest ECS tasks under target tracking (the EC2 group keeps asg_min)."
  type        = number
  default     = 2
}

variable "autoscaling_max_capacity" {
  description = "Most ECS tasks under target tracking (the EC2 group keeps asg_max)."
  type        = number
  default     = 6
}

variable "autoscaling_cpu_target_percent" {
  description = "Average CPU utilisation target tracking holds."
  type        = number
  default     = 60
}

variable "autoscaling_requests_per_target" {
  description = "ALB requests per target per minute target tracking holds."
  type        = number
  default     = 1000
}

variable "autoscaling_scale_in_cooldown_seconds" {
  description = "ECS: wait after a scaling activity before removing tasks."
  type        = number
  default     = 300
}

variable "autoscaling_scale_out_cooldown_seconds" {
  description = "ECS: wait after a scaling activity before adding tasks again."
  type        = number
  default     = 60
}

variable "autoscaling_instance_warmup_seconds" {
  description = "EC2: seconds before a new instance's metrics count."
  type        = number
  default     = 300
}

variable "enable_db_tuning" {
  description = "Phase 2 tuned parameter group on the RDS instance (database.connections sets true)."
  type        = bool
  default     = false
}

variable "db_max_connections" {
  description = "max_connections of the tuned group (static: applies at the next reboot)."
  type        = number
  default     = 112
}

variable "db_idle_in_transaction_session_timeout_ms" {
  description = "idle_in_transaction_session_timeout of the tuned group."
  type        = number
  default     = 60000
}

variable "db_tcp_keepalives_idle_seconds" {
  description = "tcp_keepalives_idle of the tuned group."
  type        = number
  default     = 60
}

variable "db_log_min_duration_statement_ms" {
  description = "log_min_duration_statement of the tuned group (-1: no slow-statement log)."
  type        = number
  default     = 1000
}

variable "enable_monitoring" {
  description = "Phase 2 alert topic, dashboard, alarms, budget and error count (monitoring.enable sets true)."
  type        = bool
  default     = false
}

variable "alert_emails" {
  description = "Email addresses subscribed to the alert topic."
  type        = list(string)
  default     = []
}

variable "alert_https_endpoints" {
  description = "HTTPS endpoints subscribed to the alert topic."
  type        = list(string)
  default     = []
}

variable "monthly_budget_usd" {
  description = "The environment's monthly budget (notifications at 80% forecast, 100% actual)."
  type        = number
  default     = 300
}

variable "budget_cost_filter" {
  description = "The budget's cost-allocation tag, user:KEY$VALUE (activate the tag in billing)."
  type        = string
  default     = ""
}

variable "alarm_thresholds" {
  description = "Alarm thresholds by name, and evaluation_minutes (phasegate's monitoring.thresholds); over the monitoring module's defaults."
  type        = map(number)
  default     = {}
}

variable "alarm_db_connections_threshold" {
  description = "Connections that set off the RDS connections alarm (rds_connections_percent of max_connections)."
  type        = number
  default     = 90
}

variable "monitoring_log_group" {
  description = "Log group whose error lines are counted; empty: the ECS service's (none on EC2)."
  type        = string
  default     = ""
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
  description = "Tasks (Fargate) or instances (EC2, within asg_min..asg_max) at creation; then target tracking sizes them."
  type        = number
  default     = 2
}

variable "db_master_password" {
  description = "RDS master password: TF_VAR_db_master_password, or a var file kept out of git."
  type        = string
  sensitive   = true
}

# Phase 3

variable "enable_spot" {
  description = "Phase 3 Spot capacity (spot.enable sets true): the ECS service's strategy gains FARGATE_SPOT, or the EC2 group a mixed-instances policy."
  type        = bool
  default     = false
}

variable "spot_fargate_base" {
  description = "ECS tasks always on FARGATE when Spot is on."
  type        = number
  default     = 1
}

variable "spot_fargate_weight" {
  description = "FARGATE's weight above the base when Spot is on."
  type        = number
  default     = 1
}

variable "spot_fargate_spot_weight" {
  description = "FARGATE_SPOT's weight above the base when Spot is on."
  type        = number
  default     = 3
}

variable "spot_on_demand_base" {
  description = "EC2 group instances always on-demand when Spot is on."
  type        = number
  default     = 1
}

variable "spot_instance_types" {
  description = "The EC2 Spot group's instance types: the launch template's and its same-size Graviton peers, several Spot pools."
  type        = list(string)
  default     = ["t4g.medium", "c6g.large", "c7g.large"]
}

variable "enable_cdn" {
  description = "Phase 3 CloudFront distribution in front of the ALB (cdn.enable sets true)."
  type        = bool
  default     = false
}

variable "cdn_static_paths" {
  description = "Path patterns the distribution caches; the rest passes through uncached."
  type        = list(string)
  default     = ["/static/*", "/assets/*"]
}

variable "cdn_price_class" {
  description = "The distribution's edge locations: PriceClass_100, PriceClass_200 or PriceClass_All."
  type        = string
  default     = "PriceClass_100"

  validation {
    condition     = contains(["PriceClass_100", "PriceClass_200", "PriceClass_All"], var.cdn_price_class)
    error_message = "cdn_price_class must be PriceClass_100, PriceClass_200 or PriceClass_All."
  }
}

# Phase 3 (regions.expand): a standby copy of the environment in a second region, one part per
# sub-step (network, alb, database, cache, compute, dns), each enabled on top of the last.

variable "secondary_region" {
  description = "The second region: where the aws.secondary provider acts. Set before enable_secondary_network and cleared only after it is false again: Terraform destroys with the provider as configured now, so a copy whose region was cleared in the same apply would be looked for in the primary's region and left behind."
  type        = string
  default     = ""

  validation {
    condition     = var.secondary_region == "" || can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.secondary_region))
    error_message = "secondary_region must be empty or a region name such as us-west-2."
  }
}

variable "enable_secondary_network" {
  description = "The second region's VPC, public subnets and internet gateway: the copy's first part (regions.expand.network)."
  type        = bool
  default     = false
}

variable "secondary_vpc_cidr" {
  description = "The second region's VPC /16, apart from the primary's (peering stays possible)."
  type        = string
  default     = "10.200.0.0/16"
}

variable "secondary_tags" {
  description = "What marks the second region's resources (the environment's discovery tags and PhasegateRole = secondary), so phasegate tells them from the primary's."
  type        = map(string)
  default     = {}
}

variable "enable_secondary_alb" {
  description = "The second region's ALB, its target group and the app's security group."
  type        = bool
  default     = false
}

variable "enable_secondary_database" {
  description = "A cross-region read replica of the primary database (promoted only by phasegate failover)."
  type        = bool
  default     = false
}

variable "enable_secondary_cache" {
  description = "A Redis replication group like the primary's in the second region."
  type        = bool
  default     = false
}

variable "enable_secondary_compute" {
  description = "The primary's compute (its ECS service or its EC2 group) copied behind the second region's ALB."
  type        = bool
  default     = false
}

variable "enable_secondary_dns" {
  description = "Route 53 failover records: the primary's ALB while its health check passes, else the second region's."
  type        = bool
  default     = false
}

variable "failover_zone_id" {
  description = "The Route 53 hosted zone (its id) holding the failover records."
  type        = string
  default     = ""
}

variable "failover_record_name" {
  description = "The failover record's name (app.example.com)."
  type        = string
  default     = ""
}

variable "failover_health_check_path" {
  description = "The path Route 53's health checks request on each region's ALB."
  type        = string
  default     = "/health"
}
